// Grouped-query causal attention of a Llama-family block: H query heads, K key/value
// heads (K divides H), query head h reads key/value head h / (H / K). The library's
// attention serves each K/V head to its group in place (no repeated heads), planned
// per query head on the rotated q and k.
#pragma once

#include <cstdint>

#include "lorafast/gpt.hpp"
#include "model/decoder_activations.hpp"

namespace lorafast {

// q [N, T, H E], k and v [N, T, K E] (packed, heads by columns) of one block; the
// caller sets the tensors.
template <class T>
AttentionParams<T> llama_attention_params(const GptConfig& cfg, std::int64_t batch, std::int64_t seq_len) {
  return causal_attention_params<T>(batch, seq_len, cfg.n_head, cfg.llama.n_kv_head, cfg.head_dim());
}

}  // namespace lorafast
