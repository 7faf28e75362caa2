// GPT-2 decoding with the KV cache: the prefill runs gpt_forward over the prompt and
// keeps its keys and values; a step runs each block on the one new row.
#include <algorithm>

#include "lorafast/attention.hpp"
#include "model/decode_state.hpp"
#include "model/gelu.hpp"
#include "model/gpt_activations.hpp"
#include "model/layer_norm.hpp"
#include "ops/decode/decode_attention.hpp"

namespace lorafast {
namespace {

template <class T>
void linear(const GptWeights<T>& w, const GptLora<T>* lora, std::int64_t layer, LoraTarget target, const T* x, T* y) {
  auto p = module_params(w, lora, layer, target, 1);
  p.x = x;
  p.y = y;
  lora_linear_fwd(p);
}

template <class T, class State>
void layer_norm_row(const GptConfig& c, const T* x, const Tensor& weight, const Tensor& bias, State& s) {
  layer_norm_fwd(LayerNormParams<T>{1, c.n_embd, c.layer_norm_epsilon, x, weight.data<T>(), bias.data<T>(),
                                    s.norm.data(), &s.stat[0], &s.stat[1], nullptr, nullptr});
}

template <class T>
void add_into(T* x, const std::vector<T>& y) {
  for (std::size_t i = 0; i < y.size(); ++i) x[i] += y[i];
}

}  // namespace

template <class T>
void decode_prefill(const GptWeights<T>& w, const GptLora<T>* lora, std::span<const std::int32_t> prompt,
                    typename CachedDecoder<GptWeights<T>>::State& s) {
  const GptConfig& c = w.config;
  const auto length = static_cast<std::int64_t>(prompt.size());
  TokenBatch batch{1, length, std::vector<std::int32_t>(prompt.begin(), prompt.end())};
  batch.tokens.push_back(0);  // gpt_forward reads windows of T + 1 tokens (the last one only a target)
  validate_tokens(batch, c);
  GptActivations<T> act;
  gpt_forward(w, lora, batch, AttentionRequest{}, Keep::all, act);
  for (std::int64_t i = 0; i < c.n_layer; ++i) {
    const auto& a = act.blocks[static_cast<std::size_t>(i)];  // qkv: [T, 3D], k and v [T, H E] = [T, K, E] inside
    const std::int64_t d = c.n_embd;
    for (std::int64_t t = 0; t < length; ++t) {
      const T* row = a.qkv.data() + t * 3 * d;
      std::copy(row + d, row + 2 * d, s.cache.k[static_cast<std::size_t>(i)].begin() + t * d);
      std::copy(row + 2 * d, row + 3 * d, s.cache.v[static_cast<std::size_t>(i)].begin() + t * d);
    }
  }
  head_logits(act.lnf_out.data() + (length - 1) * c.n_embd, w.wte, s);
}

template <class T>
void decode_step(const GptWeights<T>& w, const GptLora<T>* lora, std::int32_t token,
                 typename CachedDecoder<GptWeights<T>>::State& s) {
  const GptConfig& c = w.config;
  const std::int64_t d = c.n_embd, t = s.cache.length;
  const T* tok = w.wte.template data<T>() + static_cast<std::int64_t>(token) * d;
  const T* pos = w.wpe.template data<T>() + t * d;
  for (std::int64_t i = 0; i < d; ++i) s.x[static_cast<std::size_t>(i)] = tok[i] + pos[i];
  DecodeAttentionParams<T> attn{t + 1, c.n_head, c.n_head, c.head_dim(),
                                AttentionConfig{}.resolved_scale(c.head_dim()),  // 1/sqrt(E), as gpt_forward
                                s.qkv.data(), nullptr, nullptr, s.attn.data()};
  for (std::int64_t i = 0; i < c.n_layer; ++i) {
    const auto& b = w.blocks[static_cast<std::size_t>(i)];
    auto& k = s.cache.k[static_cast<std::size_t>(i)];
    auto& v = s.cache.v[static_cast<std::size_t>(i)];
    layer_norm_row(c, s.x.data(), b.ln_1_weight, b.ln_1_bias, s);
    linear(w, lora, i, LoraTarget::attn_c_attn, s.norm.data(), s.qkv.data());  // q | k | v
    std::copy(s.qkv.begin() + d, s.qkv.begin() + 2 * d, k.begin() + t * d);
    std::copy(s.qkv.begin() + 2 * d, s.qkv.begin() + 3 * d, v.begin() + t * d);
    attn.k = k.data();
    attn.v = v.data();
    decode_attention_fwd(attn);
    linear(w, lora, i, LoraTarget::attn_c_proj, s.attn.data(), s.proj.data());
    add_into(s.x.data(), s.proj);
    layer_norm_row(c, s.x.data(), b.ln_2_weight, b.ln_2_bias, s);
    linear(w, lora, i, LoraTarget::mlp_c_fc, s.norm.data(), s.gate.data());
    gelu_fwd(GeluParams<T>{4 * d, s.gate.data(), s.wide.data(), nullptr, nullptr});
    linear(w, lora, i, LoraTarget::mlp_c_proj, s.wide.data(), s.proj.data());
    add_into(s.x.data(), s.proj);
  }
  layer_norm_row(c, s.x.data(), w.ln_f_weight, w.ln_f_bias, s);
  head_logits(s.norm.data(), w.wte, s);
}

#define LORAFAST_INSTANTIATE(T)                                                                              \
  template void decode_prefill<T>(const GptWeights<T>&, const GptLora<T>*, std::span<const std::int32_t>,    \
                                  CachedDecoder<GptWeights<T>>::State&);                                     \
  template void decode_step<T>(const GptWeights<T>&, const GptLora<T>*, std::int32_t,                        \
                               CachedDecoder<GptWeights<T>>::State&);
LORAFAST_INSTANTIATE(float)
LORAFAST_INSTANTIATE(double)
#undef LORAFAST_INSTANTIATE

}  // namespace lorafast
