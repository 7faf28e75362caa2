// Llama-family decoding with the KV cache: the prefill runs llama_forward over the
// prompt and keeps its rotated keys and its values; a step runs each block on the
// one new row, rotating q and k by the angles of its position.
#include <algorithm>

#include "model/decode_state.hpp"
#include "model/llama_activations.hpp"
#include "model/llama_attention.hpp"
#include "model/rms_norm.hpp"
#include "model/swiglu.hpp"
#include "ops/decode/decode_attention.hpp"

namespace lorafast {
namespace {

template <class T>
void linear(const LlamaWeights<T>& w, const GptLora<T>* lora, std::int64_t layer, LoraTarget target, const T* x,
            T* y) {
  auto p = llama_module_params(w, lora, layer, target, 1);
  p.x = x;
  p.y = y;
  lora_linear_fwd(p);
}

template <class T, class State>
void rms_norm_row(const GptConfig& c, const T* x, const Tensor& weight, State& s) {
  rms_norm_fwd(RmsNormParams<T>{1, c.n_embd, c.layer_norm_epsilon, x, weight.data<T>(), s.norm.data(), &s.stat[1],
                                nullptr, nullptr, nullptr});
}

template <class T>
void add_into(T* x, const std::vector<T>& y) {
  for (std::size_t i = 0; i < y.size(); ++i) x[i] += y[i];
}

}  // namespace

template <class T>
void decode_prefill(const LlamaWeights<T>& w, const GptLora<T>* lora, std::span<const std::int32_t> prompt,
                    typename CachedDecoder<LlamaWeights<T>>::State& s) {
  const GptConfig& c = w.config;
  const auto length = static_cast<std::int64_t>(prompt.size());
  TokenBatch batch{1, length, std::vector<std::int32_t>(prompt.begin(), prompt.end())};
  batch.tokens.push_back(0);  // llama_forward reads windows of T + 1 tokens (the last one only a target)
  validate_tokens(batch, c);
  LlamaActivations<T> act;
  llama_forward(w, lora, batch, AttentionRequest{}, Keep::all, act);
  for (std::int64_t i = 0; i < c.n_layer; ++i) {
    const auto& a = act.blocks[static_cast<std::size_t>(i)];  // k (rotated), v: [T, K E]
    std::copy(a.k.begin(), a.k.end(), s.cache.k[static_cast<std::size_t>(i)].begin());
    std::copy(a.v.begin(), a.v.end(), s.cache.v[static_cast<std::size_t>(i)].begin());
  }
  head_logits(act.norm_out.data() + (length - 1) * c.n_embd, w.head(), s);
}

template <class T>
void decode_step(const LlamaWeights<T>& w, const GptLora<T>* lora, std::int32_t token,
                 typename CachedDecoder<LlamaWeights<T>>::State& s) {
  const GptConfig& c = w.config;
  const std::int64_t d = c.n_embd, t = s.cache.length, row = s.cache.row();
  const std::int64_t half = s.rope.half, f = c.llama.intermediate_size;
  const T* tok = w.embed.template data<T>() + static_cast<std::int64_t>(token) * d;
  std::copy(tok, tok + d, s.x.begin());
  std::copy_n(s.rope.cos.begin() + t * half, half, s.rope_row.cos.begin());  // the angles of position t
  std::copy_n(s.rope.sin.begin() + t * half, half, s.rope_row.sin.begin());
  const auto shape = llama_attention_params<T>(c, 1, 1);
  DecodeAttentionParams<T> attn{t + 1, shape.heads, shape.kv_heads, shape.head_dim, shape.scale,
                                s.qkv.data(), nullptr, nullptr, s.attn.data()};
  for (std::int64_t i = 0; i < c.n_layer; ++i) {
    const auto& b = w.blocks[static_cast<std::size_t>(i)];
    T* k = s.cache.k[static_cast<std::size_t>(i)].data();
    T* v = s.cache.v[static_cast<std::size_t>(i)].data();
    rms_norm_row(c, s.x.data(), b.input_norm, s);
    linear(w, lora, i, LoraTarget::q_proj, s.norm.data(), s.qkv.data());
    linear(w, lora, i, LoraTarget::k_proj, s.norm.data(), k + t * row);  // straight into the cache
    linear(w, lora, i, LoraTarget::v_proj, s.norm.data(), v + t * row);
    rope_fwd(RopeParams<T>{1, c.n_head, &s.rope_row, s.qkv.data()});
    rope_fwd(RopeParams<T>{1, c.llama.n_kv_head, &s.rope_row, k + t * row});
    attn.k = k;
    attn.v = v;
    decode_attention_fwd(attn);
    linear(w, lora, i, LoraTarget::o_proj, s.attn.data(), s.proj.data());
    add_into(s.x.data(), s.proj);
    rms_norm_row(c, s.x.data(), b.post_norm, s);
    linear(w, lora, i, LoraTarget::gate_proj, s.norm.data(), s.gate.data());
    linear(w, lora, i, LoraTarget::up_proj, s.norm.data(), s.up.data());
    swiglu_fwd(SwigluParams<T>{f, s.gate.data(), s.up.data(), s.wide.data(), nullptr, nullptr, nullptr});
    linear(w, lora, i, LoraTarget::down_proj, s.wide.data(), s.proj.data());
    add_into(s.x.data(), s.proj);
  }
  rms_norm_row(c, s.x.data(), w.norm, s);
  head_logits(s.norm.data(), w.head(), s);
}

#define LORAFAST_INSTANTIATE(T)                                                                              \
  template void decode_prefill<T>(const LlamaWeights<T>&, const GptLora<T>*, std::span<const std::int32_t>,  \
                                  CachedDecoder<LlamaWeights<T>>::State&);                                   \
  template void decode_step<T>(const LlamaWeights<T>&, const GptLora<T>*, std::int32_t,                      \
                               CachedDecoder<LlamaWeights<T>>::State&);
LORAFAST_INSTANTIATE(float)
LORAFAST_INSTANTIATE(double)
#undef LORAFAST_INSTANTIATE

}  // namespace lorafast
