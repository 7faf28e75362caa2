// What the Llama forward pass keeps for the backward pass, per block, and the
// helpers llama_forward.cpp and llama_backward.cpp share. M = N * T token rows,
// Q = H E, C = K E; per block (2 D + 2 Q + 2 C + 2 F) M values + 2 M + the lse;
// the SwiGLU output is recomputed in the backward pass.
#pragma once

#include "lorafast/llama.hpp"
#include "model/gpt_activations.hpp"
#include "model/lora_linear.hpp"
#include "model/rope.hpp"

namespace lorafast {

template <class T>
struct LlamaBlockActivations {
  Activation<T> rstd1, norm1;  // [M], [M, D]
  Activation<T> q, k, v;       // [M, Q], [M, C], [M, C]; q and k rotated
  Activation<T> attn, lse;     // [M, Q], [N, H, T]
  Activation<T> x_mid;         // [M, D]
  Activation<T> rstd2, norm2;  // [M], [M, D]
  Activation<T> gate, up;      // [M, F] each

  std::size_t size() const { return values(rstd1, norm1, q, k, v, attn, lse, x_mid, rstd2, norm2, gate, up); }
};

template <class T>
struct LlamaActivations : KeptBlocks<T, LlamaBlockActivations<T>> {
  std::int64_t batch = 0, seq_len = 0, rows = 0;  // N, T, M
  GptAttentionPlan plan;
  RopeTable<T> rope;
  Activation<T> norm_rstd, norm_out;  // [M], [M, D]
  std::vector<std::int32_t> targets;  // [M]
};

// The forward pass up to the final norm, keeping what `keep` says (act.keep is the
// resolved choice).
template <class T>
void llama_forward(const LlamaWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                   const AttentionRequest& attention, Keep keep, LlamaActivations<T>& act);

// Block `layer` from its input x: its activations into `a`, the output into `out`.
// With `request` it plans its attention into act.plan[layer]; without, it reruns
// that plan and stops before the MLP's down projection (`out` unused): what the
// backward pass recomputes. h [M, F] and proj [M, D] are scratch.
template <class T>
void llama_block_fwd(const LlamaWeights<T>& weights, const GptLora<T>* lora, std::int64_t layer,
                     const AttentionRequest* request, LlamaActivations<T>& act, const T* x,
                     LlamaBlockActivations<T>& a, T* h, T* proj, T* out);

// The projection `target` (a Llama target) of block `layer`, with its adapter when `lora` adapts it.
template <class T>
LoraLinearParams<T> llama_module_params(const LlamaWeights<T>& weights, const GptLora<T>* lora, std::int64_t layer,
                                        LoraTarget target, std::int64_t rows);

}  // namespace lorafast
