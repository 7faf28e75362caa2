// What a CachedDecoder owns besides its cache: one-row buffers sized once for the
// model, and the family-specific prefill and step (gpt_decode.cpp, llama_decode.cpp).
#pragma once

#include <span>
#include <vector>

#include "lorafast/decoder.hpp"
#include "model/rope.hpp"

namespace lorafast {

template <class W>
struct CachedDecoder<W>::State {
  KvCache<T> cache;
  RopeTable<T> rope;      // the Llama family: positions 0 .. C-1
  RopeTable<T> rope_row;  // the Llama family: the one position of the current step
  std::vector<T> x;       // [D] residual stream of the new position
  std::vector<T> norm;    // [D] normalised x
  std::vector<T> qkv;     // [H E + 2 K E] (GPT-2: c_attn's output; Llama: q only)
  std::vector<T> attn;    // [H E]
  std::vector<T> proj;    // [D]
  std::vector<T> wide;    // [F] (GPT-2: 4 D) MLP input of the down projection
  std::vector<T> gate;    // [F] (GPT-2: c_fc's output)
  std::vector<T> up;      // [F] (Llama only)
  std::vector<T> logits_t;      // [V]
  std::vector<double> logits;   // [V]
  T stat[2] = {};               // a normalisation's row statistics (mean, rstd)
};

// logits = table h (table [V, D], the tied wte or lm_head), output columns split across threads.
template <class T, class State>
void head_logits(const T* h, const Tensor& table, State& s);

template <class T>
void decode_prefill(const GptWeights<T>& w, const GptLora<T>* lora, std::span<const std::int32_t> prompt,
                    typename CachedDecoder<GptWeights<T>>::State& s);
template <class T>
void decode_step(const GptWeights<T>& w, const GptLora<T>* lora, std::int32_t token,
                 typename CachedDecoder<GptWeights<T>>::State& s);
template <class T>
void decode_prefill(const LlamaWeights<T>& w, const GptLora<T>* lora, std::span<const std::int32_t> prompt,
                    typename CachedDecoder<LlamaWeights<T>>::State& s);
template <class T>
void decode_step(const LlamaWeights<T>& w, const GptLora<T>* lora, std::int32_t token,
                 typename CachedDecoder<LlamaWeights<T>>::State& s);

}  // namespace lorafast
