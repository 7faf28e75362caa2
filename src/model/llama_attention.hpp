// Grouped-query causal attention of a Llama-family block: H query heads, K key/value
// heads (K divides H), query head h reads key/value head h / (H / K). This is the one
// place the Llama path calls attention; it repeats k and v to H heads and runs the
// planned (per query head) attention on them, and the backward pass sums d_k and
// d_v back over each group. A zero-copy GQA entry point replaces the repetition here.
#pragma once

#include <cstdint>
#include <vector>

#include "lorafast/dispatch.hpp"

namespace lorafast {

template <class T>
struct LlamaAttentionParams {
  std::int64_t batch = 1, seq_len = 0;  // N, T
  std::int64_t heads = 1, kv_heads = 1, head_dim = 0;  // H, K, E
  const T* q = nullptr;  // [N, T, H E]  rotated
  const T* k = nullptr;  // [N, T, K E]  rotated
  const T* v = nullptr;  // [N, T, K E]
  T* o = nullptr;        // [N, T, H E]  fwd output, bwd input
  T* lse = nullptr;      // [N, H, T]    fwd output, bwd input
  const T* d_o = nullptr;  // [N, T, H E]  bwd input
  T* d_q = nullptr;        // [N, T, H E]  bwd outputs (overwritten)
  T* d_k = nullptr;        // [N, T, K E]
  T* d_v = nullptr;        // [N, T, K E]
};

// Plans every query head on q and the repeated k (plan_heads), runs it; returns the plan.
template <class T>
std::vector<HeadDecision> llama_attention_fwd(const LlamaAttentionParams<T>& p, const DispatchRequest& request);
// The gradient of the forward pass that ran `plan`.
template <class T>
void llama_attention_bwd(const LlamaAttentionParams<T>& p, const std::vector<HeadDecision>& plan);

}  // namespace lorafast
