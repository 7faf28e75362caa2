#include "support/tiny_llama.hpp"

#include <cmath>
#include <random>

#include <nlohmann/json.hpp>

namespace lorafast::testing {

template <class T>
LlamaWeights<T> tiny_llama(const TinyLlamaSpec& spec) {
  nlohmann::json config = {{"model_type", spec.model_type},  {"hidden_size", spec.dim},
                                 {"num_hidden_layers", spec.layers}, {"num_attention_heads", spec.heads},
                                 {"num_key_value_heads", spec.kv_heads}, {"head_dim", spec.head_dim},
                                 {"intermediate_size", spec.ffn},    {"vocab_size", spec.vocab},
                                 {"max_position_embeddings", spec.positions}, {"rms_norm_eps", 1e-5},
                                 {"rope_theta", 100.0},              {"tie_word_embeddings", spec.tied}};
  const bool gemma3 = spec.model_type == "gemma3_text";
  if (gemma3)  // a window shorter than the decoding tests' contexts, on layer 0; its own RoPE base
    config.update({{"sliding_window", 3}, {"layer_types", {"sliding_attention", "full_attention"}},
                   {"rope_local_base_freq", 10.0}, {"query_pre_attn_scalar", 7}, {"final_logit_softcapping", 3.0}});
  const GptConfig cfg = parse_gpt_config(config.dump(), "tiny config.json");
  std::mt19937_64 rng(spec.seed);
  std::normal_distribution<double> normal;
  TensorMap tensors;
  auto add = [&](const std::string& name, Shape shape, double mean, double sd) {
    Tensor t(DType::f64, std::move(shape));
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = mean + sd * normal(rng);
    tensors[name] = std::move(t);
  };
  const std::int64_t d = spec.dim, q = spec.heads * spec.head_dim, kv = spec.kv_heads * spec.head_dim;
  auto linear = [&](const std::string& name, std::int64_t in, std::int64_t out, bool bias) {
    add(name + ".weight", {out, in}, 0, 1 / std::sqrt(static_cast<double>(in)));
    if (bias) add(name + ".bias", {out}, 0, 0.1);
  };
  const bool qkv_bias = cfg.llama.qkv_bias;
  add("model.embed_tokens.weight", {spec.vocab, d}, 0, 1);
  for (std::int64_t i = 0; i < spec.layers; ++i) {
    const std::string l = cat("model.layers.", i, '.');
    add(l + "input_layernorm.weight", {d}, 1, 0.2);
    linear(l + "self_attn.q_proj", d, q, qkv_bias);
    linear(l + "self_attn.k_proj", d, kv, qkv_bias);
    linear(l + "self_attn.v_proj", d, kv, qkv_bias);
    linear(l + "self_attn.o_proj", q, d, cfg.llama.o_bias);
    add(l + "post_attention_layernorm.weight", {d}, 1, 0.2);
    linear(l + "mlp.gate_proj", d, spec.ffn, false);
    linear(l + "mlp.up_proj", d, spec.ffn, false);
    linear(l + "mlp.down_proj", spec.ffn, d, false);
    if (!gemma3) continue;
    add(l + "self_attn.q_norm.weight", {spec.head_dim}, 1, 0.2);
    add(l + "self_attn.k_norm.weight", {spec.head_dim}, 1, 0.2);
    add(l + "pre_feedforward_layernorm.weight", {d}, 1, 0.2);
    add(l + "post_feedforward_layernorm.weight", {d}, 1, 0.2);
  }
  add("model.norm.weight", {d}, 1, 0.2);
  if (!spec.tied) add("lm_head.weight", {spec.vocab, d}, 0, 1 / std::sqrt(static_cast<double>(d)));
  return llama_weights_from_tensors<T>(cfg, tensors, "tiny llama");
}

template LlamaWeights<float> tiny_llama<float>(const TinyLlamaSpec&);
template LlamaWeights<double> tiny_llama<double>(const TinyLlamaSpec&);

}  // namespace lorafast::testing
