// The oracle: slow, obviously-correct double-precision attention and LoRA chain rule
// (SPEC.md §1-2), written for clarity and never optimized. It materialises the
// L x L probabilities and derives dS from its definition rowsum(P ∘ dP), not from the
// delta = rowsum(dO ∘ O) shortcut the optimized kernels use.
#pragma once

#include <span>

#include "lorafast/fast_attention.hpp"
#include "lorafast/lora.hpp"
#include "lorafast/tensor.hpp"

namespace lorafast::ref {

// Single-sequence multi-head attention on [L, D] matrices (D = heads * E).
struct AttentionProblem {
  MatrixView<const double> q, k, v;
  std::int64_t heads = 1;
  double scale = 1.0;
  bool causal = false;
  std::int64_t window = 0;                  // AttentionParams::window
  std::span<const std::int64_t> cu_seqlens{};  // AttentionParams::cu_seqlens of this one row (0 .. L)
};

void attention_fwd(const AttentionProblem& problem, MatrixView<double> o);
void attention_bwd(const AttentionProblem& problem, MatrixView<const double> d_o,
                   MatrixView<double> d_q, MatrixView<double> d_k, MatrixView<double> d_v);

// Loss and adapter gradients in double, whatever options.dtype says.
LoraAttentionGrads lora_attention_grad(const LoraAttentionInputs& inputs,
                                       const LoraAttentionOptions& options);

}  // namespace lorafast::ref

namespace lorafast::ref {

// The Taylor surrogate of fast_attention.hpp, densely from its definition: weights
// from the scalar polynomial T_g(s_ij) (not from features), exact exp inside causal
// chunks. Single sequence, all heads.
void surrogate_fwd(const AttentionProblem& problem, const SurrogateConfig& config, MatrixView<double> o);
// The exact gradient of the surrogate's loss (what fast_attention_bwd computes).
void surrogate_bwd(const AttentionProblem& problem, const SurrogateConfig& config, MatrixView<const double> d_o,
                   MatrixView<double> d_q, MatrixView<double> d_k, MatrixView<double> d_v);
// The exact-gradient formula evaluated at the surrogate P~ (what chained_attention_bwd computes).
void chained_bwd(const AttentionProblem& problem, const SurrogateConfig& config, MatrixView<const double> d_o,
                 MatrixView<double> d_q, MatrixView<double> d_k, MatrixView<double> d_v);

}  // namespace lorafast::ref
