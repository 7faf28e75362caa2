// Grouped-query causal attention of a Llama-family block: H query heads, K key/value
// heads (K divides H), query head h reads key/value head h / (H / K). The library's
// attention serves each K/V head to its group in place (no repeated heads), planned
// per query head on the rotated q and k.
#pragma once

#include <cstdint>

#include "lorafast/attention.hpp"
#include "lorafast/gpt.hpp"

namespace lorafast {

// q [N, T, H E], k and v [N, T, K E] (packed, heads by columns) of one block; the
// caller sets the tensors.
template <class T>
AttentionParams<T> llama_attention_params(const GptConfig& cfg, std::int64_t batch, std::int64_t seq_len) {
  AttentionParams<T> a;
  a.batch = batch;
  a.seq_len = seq_len;
  a.heads = cfg.n_head;
  a.kv_heads = cfg.llama.n_kv_head;
  a.head_dim = cfg.head_dim();
  a.scale = AttentionConfig{}.resolved_scale(a.head_dim);  // 1/sqrt(E), as transformers' head_dim**-0.5
  a.causal = true;
  return a;
}

}  // namespace lorafast
