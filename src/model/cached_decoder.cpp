// CachedDecoder: capacity checks and buffers sized for the model's parts; the
// prefill and steps are decoder_decode.cpp.
#include <algorithm>

#include "model/decode_state.hpp"

namespace lorafast {

std::int64_t max_decode_positions(const GptConfig& config) { return config.n_positions; }

template <class W>
CachedDecoder<W>::CachedDecoder(const W& weights, const GptLora<T>* lora, std::int64_t capacity)
    : weights_(&weights), lora_(lora), state_(std::make_unique<State>()) {
  const GptConfig& c = weights.config;
  const std::int64_t most = max_decode_positions(c);
  LF_CHECK(capacity >= 1 && capacity <= most, ErrorKind::usage, "generation needs ", capacity,
           " positions (prompt + new tokens), outside [1, ", most, "], the model's ",
           c.is_llama() ? "max_position_embeddings" : "n_positions");
  if (lora != nullptr) validate_gpt_lora(*lora, c, "adapter");
  State& s = *state_;
  const DecoderSpec spec = decoder_spec(c);
  const std::int64_t e = spec.head_dim, kv = spec.kv_heads, f = spec.ffn;
  s.cache.capacity = capacity;
  s.cache.kv_heads = kv;
  s.cache.head_dim = e;
  s.cache.k.assign(static_cast<std::size_t>(c.n_layer), std::vector<T>(static_cast<std::size_t>(capacity * kv * e)));
  s.cache.v = s.cache.k;
  if (!spec.learned_positions) {
    s.rope = make_rope_table<T>(spec.rope, e, capacity);
    s.rope_row = make_rope_table<T>(spec.rope, e, 1);
  }
  if (spec.sliding_rope) {
    s.sliding_rope = make_rope_table<T>(*spec.sliding_rope, e, capacity);
    s.sliding_rope_row = make_rope_table<T>(*spec.sliding_rope, e, 1);
  }
  const auto n = [](std::int64_t size) { return static_cast<std::size_t>(size); };
  s.x.resize(n(c.n_embd));
  s.norm.resize(n(c.n_embd));
  s.proj.resize(n(c.n_embd));
  s.out.resize(n(spec.post_norms ? c.n_embd : 0));
  s.qkv.resize(n(spec.q_width() + 2 * spec.kv_width()));
  s.attn.resize(n(spec.q_width()));
  s.head_rstd.resize(n(spec.qk_norm ? spec.heads : 0));
  s.wide.resize(n(f));
  s.mlp_in.resize(n(f * spec.mlp_in_parts()));
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
  decode_prefill(decoder_view(*weights_), lora_, prompt, s);
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
  decode_step(decoder_view(*weights_), lora_, token, s);
  ++s.cache.length;
  return s.logits;
}

template class CachedDecoder<GptWeights<float>>;
template class CachedDecoder<GptWeights<double>>;
template class CachedDecoder<LlamaWeights<float>>;
template class CachedDecoder<LlamaWeights<double>>;

}  // namespace lorafast
