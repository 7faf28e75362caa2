// Autoregressive decoding with a key/value cache, for GPT-2 and the Llama family.
// The prompt is prefilled by the model's forward pass (its keys and values, the
// Llama family's keys after RoPE, are copied into the cache); each later token is
// one step that runs every block on a single row and attends to the cache, so a
// step costs O(T D) attention work (plus the O(D^2) projections) instead of the
// O(T^2 D) of recomputing the prefix. LoRA adapters are applied unmerged, through
// the same LoRA linear layer as training (s * x A^T B^T added to each module).
//
// Shape legend: C capacity (positions the cache holds), K key/value heads (H for
// GPT-2), E head dim, V vocabulary.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "lorafast/gpt_generate.hpp"
#include "lorafast/llama.hpp"

namespace lorafast {

// Per layer, the keys and values of positions 0 .. length-1, preallocated for
// `capacity` positions.
template <class T>
struct KvCache {
  std::int64_t capacity = 0;           // C
  std::int64_t kv_heads = 0;           // K
  std::int64_t head_dim = 0;           // E
  std::int64_t length = 0;             // positions filled
  std::vector<std::vector<T>> k, v;    // n_layer, each [C, K, E]
  std::int64_t row() const { return kv_heads * head_dim; }
};

// bf16 mixed precision (INTERFACE.md "Precision"): the frozen matrices of the base
// model (every projection, the token embedding, the LM head) are rounded to bf16 in
// place, halving their memory; norms, biases and position tables stay f32. From then
// on the model's products take bf16 inputs and sum in f32 (the activations and
// gradients they multiply are rounded to bf16, as under torch.autocast), attention
// runs its exact kernels with bf16 tile products, and everything else (LoRA adapters and their
// gradients, norms, softmax, residual sums, the loss) stays f32. On a CPU without
// bf16 arithmetic the same products are computed in f32 (bf16.hpp). Gradients of the
// base weights (pretraining) are f32 sums of f32 terms, laid out as f32 weights.
void store_frozen_bf16(GptWeights<float>& weights);
void store_frozen_bf16(LlamaWeights<float>& weights);

// The largest capacity a model supports: n_positions (max_position_embeddings); a
// sliding window limits which cached positions a step sees, not how many are kept.
std::int64_t max_decode_positions(const GptConfig& config);

template <class W>
class CachedDecoder {
 public:
  using T = typename W::value_type;
  // Holds up to `capacity` positions (prompt + generated tokens): Error(usage) when
  // capacity is < 1 or above max_decode_positions, naming both. `weights` and
  // `lora` (nullptr: none; validated here) must outlive the decoder.
  CachedDecoder(const W& weights, const GptLora<T>* lora, std::int64_t capacity);
  ~CachedDecoder();
  CachedDecoder(CachedDecoder&&) noexcept;
  CachedDecoder& operator=(CachedDecoder&&) noexcept;

  // Fills the empty cache with `prompt` (1 .. capacity tokens in [0, V)) and returns
  // the next-token logits [V] after it. Error(bad_input) for a bad token, Error(usage)
  // when the cache is not empty or the prompt does not fit.
  const std::vector<double>& prefill(std::span<const std::int32_t> prompt);
  // Appends `token` at position length() and returns the logits [V] after it;
  // Error(usage) when the cache is full or empty, Error(bad_input) for a bad token.
  const std::vector<double>& step(std::int32_t token);

  const KvCache<T>& cache() const;
  std::int64_t length() const { return cache().length; }
  std::int64_t capacity() const { return cache().capacity; }

  struct State;  // buffers sized once (src/model/decode_state.hpp)

 private:
  const W* weights_;
  const GptLora<T>* lora_;
  std::unique_ptr<State> state_;
};

// The next-token logits of `context` by a full forward pass, no cache (what each
// step of CachedDecoder equals up to rounding): gpt_next_logits, and the same for
// the Llama family. 1 .. n_positions tokens; Error(bad_input) otherwise.
template <class T>
std::vector<double> llama_next_logits(const LlamaWeights<T>& weights, const GptLora<T>* lora,
                                      std::span<const std::int32_t> context);
template <class T>
std::vector<double> model_next_logits(const GptWeights<T>& w, const GptLora<T>* lora, std::span<const std::int32_t> c) {
  return gpt_next_logits(w, lora, c);
}
template <class T>
std::vector<double> model_next_logits(const LlamaWeights<T>& w, const GptLora<T>* lora, std::span<const std::int32_t> c) {
  return llama_next_logits(w, lora, c);
}

}  // namespace lorafast
