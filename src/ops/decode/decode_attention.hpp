// One decoding step of causal attention: the newest query row of every head against
// the keys and values of positions 0 .. length-1 held in a KV cache (the new
// position included; with a sliding window, only the last `window` of them), with an
// exact softmax:
//   o_h = sum_j p_hj v_{j,g},   p_hj = softmax_j(scale * q_h . k_{j,g}),   g = h / (H / H_kv)
// (grouped-query heads: each K/V head serves H / H_kv query heads, none repeated).
// O(length * H * E) work; scores, softmax and the weighted sum accumulate in double.
// The training kernels are tiled for many query rows; a single row needs none of that.
#pragma once

#include <cstdint>

namespace lorafast {

template <class T>
struct DecodeAttentionParams {
  std::int64_t length = 0;    // keys to attend to, >= 1
  std::int64_t heads = 1;     // H
  std::int64_t kv_heads = 1;  // H_kv, divides H
  std::int64_t head_dim = 0;  // E
  double scale = 0;           // beta, > 0
  const T* q = nullptr;       // [H, E]            the new position's query
  const T* k = nullptr;       // [length, H_kv, E] cached keys (rotated for RoPE models)
  const T* v = nullptr;       // [length, H_kv, E] cached values
  T* o = nullptr;             // [H, E]            output
  std::int64_t window = 0;    // > 0: only the last `window` positions (AttentionParams::window); 0: all
};

template <class T>
void decode_attention_fwd(const DecodeAttentionParams<T>& p);

}  // namespace lorafast
