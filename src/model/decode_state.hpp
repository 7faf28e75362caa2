// What a CachedDecoder owns besides its cache: one-row buffers sized once for the
// model, and the prefill and step of the decoder (decoder_decode.cpp).
#pragma once

#include <span>
#include <vector>

#include "lorafast/decoder.hpp"
#include "model/decoder_parts.hpp"
#include "model/rope.hpp"

namespace lorafast {

template <class T>
struct DecodeState {
  KvCache<T> cache;
  RopeTable<T> rope, sliding_rope;          // with RoPE: positions 0 .. C-1 (sliding_rope: of spec.sliding_rope)
  RopeTable<T> rope_row, sliding_rope_row;  // with RoPE: the one position of the current step
  std::vector<T> x;       // [D] residual stream of the new position
  std::vector<T> norm;    // [D] normalised x
  std::vector<T> qkv;     // [Q + 2 C] (fused: the projection's output; else q only)
  std::vector<T> attn;    // [Q]
  std::vector<T> head_rstd;  // [H] with qk_norm: the per-head norms' statistics
  std::vector<T> proj;    // [D]
  std::vector<T> out;     // [D] with post_norms: an output projection's output before its norm
  std::vector<T> wide;    // [F] the MLP activation's output
  std::vector<T> mlp_in;  // [F] per MLP input projection
  std::vector<T> logits_t;      // [V]
  std::vector<double> logits;   // [V]
  T stat[2] = {};               // a normalisation's row statistics (mean, rstd)
};

template <class W>
struct CachedDecoder<W>::State : DecodeState<T> {};

// Fills the empty cache from `prompt` by the forward pass and sets s.logits to the
// next-token logits after it.
template <class T>
void decode_prefill(const DecoderView<T>& m, const GptLora<T>* lora, std::span<const std::int32_t> prompt,
                    DecodeState<T>& s);
// Runs `token` at position s.cache.length through every block, appending its keys
// and values to the cache, and sets s.logits.
template <class T>
void decode_step(const DecoderView<T>& m, const GptLora<T>* lora, std::int32_t token, DecodeState<T>& s);

}  // namespace lorafast
