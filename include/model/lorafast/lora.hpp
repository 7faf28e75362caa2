// LoRA on the q, k, v projections of attention and the exact gradient of the
// regression loss 1/2 * sum ||O - Y||^2 with respect to every adapter (SPEC.md §1-2).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "lorafast/attention.hpp"
#include "lorafast/dispatch.hpp"
#include "lorafast/tensor.hpp"

namespace lorafast {

enum class Projection { q = 0, k = 1, v = 2 };
constexpr std::array<Projection, 3> all_projections{Projection::q, Projection::k, Projection::v};
std::string projection_name(Projection p);  // "q", "k", "v"

// PEFT layout: W_eff = W + s * B A.
struct LoraAdapter {
  Tensor a;  // lora_A: [R, D]
  Tensor b;  // lora_B: [D, R]
  std::int64_t rank() const { return a.dim(0); }
};

struct LoraScaling {
  std::optional<double> alpha;  // unset: alpha = R, i.e. s = 1
  bool rslora = false;          // s = alpha / sqrt(R) instead of alpha / R
  double factor(std::int64_t rank) const;
};

// One gradient problem: a batch of sequences through LoRA attention.
struct LoraAttentionInputs {
  Tensor x;                 // [N, L, D]
  Tensor y;                 // [N, L, D]
  std::array<Tensor, 3> w;  // w_q, w_k, w_v: [D, D], [out, in]
  std::array<std::optional<LoraAdapter>, 3> lora;  // indexed by Projection

  std::int64_t batch() const { return x.dim(0); }
  std::int64_t seq_len() const { return x.dim(1); }
  std::int64_t model_dim() const { return x.dim(2); }
};

struct LoraAttentionOptions {
  AttentionConfig attention;
  LoraScaling scaling;
  DType dtype = DType::f32;  // precision of the computation and of the results
  // Mixed precision (dtype f32 only): x and the frozen weights rounded to bf16 for
  // X W^T (bf16 products, f32 sums), the adapters' terms s (X A^T) B^T unmerged in f32,
  // attention with bf16 tile products (AttentionParams::bf16_products); gradients and
  // loss in f32.
  bool bf16 = false;
  AttentionRequest request;  // method, eps, degree, cost model of the attention
};

struct LoraAttentionGrads {
  double loss = 0.0;
  std::array<std::optional<LoraAdapter>, 3> d_lora;  // d_lora_a_p, d_lora_b_p per adapted p
  std::vector<HeadDecision> heads;                   // how each head was computed, and why
};

// Checks names-independent consistency: ranks, shapes, heads dividing D, finiteness.
// Throws Error(bad_input) naming the tensor at fault, Error(usage) for bad options.
void validate(const LoraAttentionInputs& inputs, const LoraAttentionOptions& options);

// The per-head plan lora_attention_grad makes for these inputs (the same request and
// cost model), from Q and K projected in f64 (LoRA included): what `lorafast phase`
// reports. O(N L D^2) for the projections. Validates first.
std::vector<HeadDecision> lora_attention_plan(const LoraAttentionInputs& inputs,
                                              const LoraAttentionOptions& options);

// The gradient, each head through the method the dispatcher picks (exact tiled
// kernels, the fast surrogate path or the paper's chained route). Validates first.
LoraAttentionGrads lora_attention_grad(const LoraAttentionInputs& inputs,
                                       const LoraAttentionOptions& options);

}  // namespace lorafast
