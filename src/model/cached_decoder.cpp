// The family-independent part of CachedDecoder: capacity checks, buffers, the LM head.
#include <algorithm>

#include "kernels/column_split.hpp"
#include "kernels/gemm.hpp"
#include "model/decode_state.hpp"

namespace lorafast {

std::int64_t max_decode_positions(const GptConfig& config) {
  const std::int64_t window = config.is_llama() ? config.llama.sliding_window : 0;
  return window > 0 ? std::min(window, config.n_positions) : config.n_positions;
}

template <class T, class State>
void head_logits(const T* h, const Tensor& table, State& s) {
  const std::int64_t vocab = table.dim(0), d = table.dim(1);
  const MatrixView<const T> x{h, 1, d, d}, w{table.data<T>(), vocab, d, d};
  const MatrixView<T> y{s.logits_t.data(), 1, vocab, vocab};
  kernels::for_column_blocks(vocab, [&](std::int64_t c0, std::int64_t c1) {
    kernels::gemm(kernels::Op::none, kernels::Op::trans, T(1), x, w.block(c0, 0, c1 - c0, d), T(0),
                  y.block(0, c0, 1, c1 - c0));
  });
  std::copy(s.logits_t.begin(), s.logits_t.end(), s.logits.begin());
}

template <class W>
CachedDecoder<W>::CachedDecoder(const W& weights, const GptLora<T>* lora, std::int64_t capacity)
    : weights_(&weights), lora_(lora), state_(std::make_unique<State>()) {
  const GptConfig& c = weights.config;
  const std::int64_t most = max_decode_positions(c);
  LF_CHECK(capacity >= 1 && capacity <= most, ErrorKind::usage, "generation needs ", capacity,
           " positions (prompt + new tokens), outside [1, ", most, "], the model's ",
           most == c.n_positions ? (c.is_llama() ? "max_position_embeddings" : "n_positions") : "sliding_window");
  if (lora != nullptr) validate_gpt_lora(*lora, c, "adapter");
  State& s = *state_;
  const std::int64_t e = c.head_dim(), kv = c.is_llama() ? c.llama.n_kv_head : c.n_head, q = c.n_head * e;
  const std::int64_t f = c.is_llama() ? c.llama.intermediate_size : 4 * c.n_embd;
  s.cache.capacity = capacity;
  s.cache.kv_heads = kv;
  s.cache.head_dim = e;
  s.cache.k.assign(static_cast<std::size_t>(c.n_layer), std::vector<T>(static_cast<std::size_t>(capacity * kv * e)));
  s.cache.v = s.cache.k;
  if (c.is_llama()) {
    s.rope = make_rope_table<T>(c.llama.rope, e, capacity);
    s.rope_row = make_rope_table<T>(c.llama.rope, e, 1);
  }
  const auto n = [](std::int64_t size) { return static_cast<std::size_t>(size); };
  s.x.resize(n(c.n_embd));
  s.norm.resize(n(c.n_embd));
  s.proj.resize(n(c.n_embd));
  s.qkv.resize(n(q + 2 * kv * e));
  s.attn.resize(n(q));
  s.wide.resize(n(f));
  s.gate.resize(n(f));
  s.up.resize(n(c.is_llama() ? f : 0));
  s.logits_t.resize(n(c.vocab_size));
  s.logits.resize(n(c.vocab_size));
}

template <class W>
CachedDecoder<W>::~CachedDecoder() = default;
template <class W>
CachedDecoder<W>::CachedDecoder(CachedDecoder&&) noexcept = default;
template <class W>
CachedDecoder<W>& CachedDecoder<W>::operator=(CachedDecoder&&) noexcept = default;

template <class W>
const KvCache<typename W::value_type>& CachedDecoder<W>::cache() const {
  return state_->cache;
}

template <class W>
const std::vector<double>& CachedDecoder<W>::prefill(std::span<const std::int32_t> prompt) {
  State& s = *state_;
  LF_CHECK(s.cache.length == 0, ErrorKind::usage, "prefill needs an empty cache; it holds ", s.cache.length,
           " positions");
  LF_CHECK(!prompt.empty(), ErrorKind::usage, "the prompt is empty: generation needs at least one token");
  LF_CHECK(static_cast<std::int64_t>(prompt.size()) <= s.cache.capacity, ErrorKind::usage, "the prompt has ",
           prompt.size(), " tokens, more than the cache's ", s.cache.capacity, " positions");
  decode_prefill(*weights_, lora_, prompt, s);
  s.cache.length = static_cast<std::int64_t>(prompt.size());
  return s.logits;
}

template <class W>
const std::vector<double>& CachedDecoder<W>::step(std::int32_t token) {
  State& s = *state_;
  LF_CHECK(s.cache.length >= 1, ErrorKind::usage, "a decoding step needs a prefilled cache");
  LF_CHECK(s.cache.length < s.cache.capacity, ErrorKind::usage, "the cache is full (", s.cache.capacity,
           " positions)");
  LF_CHECK(token >= 0 && token < weights_->config.vocab_size, ErrorKind::bad_input, "token ", token,
           " is outside the vocabulary [0, ", weights_->config.vocab_size, ")");
  decode_step(*weights_, lora_, token, s);
  ++s.cache.length;
  return s.logits;
}

template class CachedDecoder<GptWeights<float>>;
template class CachedDecoder<GptWeights<double>>;
template class CachedDecoder<LlamaWeights<float>>;
template class CachedDecoder<LlamaWeights<double>>;
template void head_logits<float>(const float*, const Tensor&, CachedDecoder<GptWeights<float>>::State&);
template void head_logits<double>(const double*, const Tensor&, CachedDecoder<GptWeights<double>>::State&);
template void head_logits<float>(const float*, const Tensor&, CachedDecoder<LlamaWeights<float>>::State&);
template void head_logits<double>(const double*, const Tensor&, CachedDecoder<LlamaWeights<double>>::State&);

}  // namespace lorafast
