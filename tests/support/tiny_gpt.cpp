#include "support/tiny_gpt.hpp"

#include <cmath>
#include <random>

namespace lorafast::testing {

GptConfig tiny_config(const TinyGptSpec& spec) {
  GptConfig c;
  c.n_layer = spec.layers;
  c.n_head = spec.heads;
  c.n_embd = spec.dim;
  c.n_positions = spec.positions;
  c.vocab_size = spec.vocab;
  c.layer_norm_epsilon = 1e-5;
  return c;
}

TensorMap tiny_model_tensors(const TinyGptSpec& spec, bool prefixed) {
  std::mt19937_64 rng(spec.seed);
  std::normal_distribution<double> normal;
  const std::string prefix = prefixed ? "transformer." : "";
  TensorMap out;
  auto add = [&](const std::string& name, Shape shape, double mean, double sd) {
    Tensor t(DType::f64, std::move(shape));
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = mean + sd * normal(rng);
    out[prefix + name] = std::move(t);
  };
  const std::int64_t d = spec.dim;
  const double sd_d = 1.0 / std::sqrt(static_cast<double>(d)), sd_4d = 0.5 * sd_d;
  add("wte.weight", {spec.vocab, d}, 0, 1.0);
  add("wpe.weight", {spec.positions, d}, 0, 0.3);
  for (std::int64_t i = 0; i < spec.layers; ++i) {
    const std::string h = cat("h.", i, '.');
    add(h + "ln_1.weight", {d}, 1, 0.1);
    add(h + "ln_1.bias", {d}, 0, 0.1);
    add(h + "attn.c_attn.weight", {d, 3 * d}, 0, sd_d);
    add(h + "attn.c_attn.bias", {3 * d}, 0, 0.1);
    add(h + "attn.c_proj.weight", {d, d}, 0, sd_d);
    add(h + "attn.c_proj.bias", {d}, 0, 0.1);
    add(h + "ln_2.weight", {d}, 1, 0.1);
    add(h + "ln_2.bias", {d}, 0, 0.1);
    add(h + "mlp.c_fc.weight", {d, 4 * d}, 0, sd_d);
    add(h + "mlp.c_fc.bias", {4 * d}, 0, 0.1);
    add(h + "mlp.c_proj.weight", {4 * d, d}, 0, sd_4d);
    add(h + "mlp.c_proj.bias", {d}, 0, 0.1);
  }
  add("ln_f.weight", {d}, 1, 0.1);
  add("ln_f.bias", {d}, 0, 0.1);
  return out;
}

template <class T>
GptLora<T> random_lora(const GptConfig& model, const LoraConfig& config, std::uint64_t seed) {
  auto lora = init_gpt_lora<T>(model, config, seed);
  std::mt19937_64 rng(seed + 1000);
  std::normal_distribution<double> normal;
  const double sd = 0.5 / std::sqrt(static_cast<double>(config.rank));
  for (auto& layer : lora.layers)
    for (auto& adapter : layer)
      if (adapter)
        for (std::int64_t i = 0; i < adapter->b.numel(); ++i) adapter->b.template data<T>()[i] = static_cast<T>(sd * normal(rng));
  mask_c_attn_rows(lora.layers, config);
  return lora;
}

template GptLora<float> random_lora<float>(const GptConfig&, const LoraConfig&, std::uint64_t);
template GptLora<double> random_lora<double>(const GptConfig&, const LoraConfig&, std::uint64_t);

TokenBatch random_tokens(std::int64_t batch, std::int64_t seq_len, std::int64_t vocab, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int32_t> uniform(0, static_cast<std::int32_t>(vocab - 1));
  TokenBatch b{batch, seq_len, {}};
  b.tokens.resize(static_cast<std::size_t>(batch * (seq_len + 1)));
  for (auto& t : b.tokens) t = uniform(rng);
  return b;
}

double lora_relative_difference(const std::vector<LoraLayer>& got, const std::vector<LoraLayer>& ref) {
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < ref.size(); ++i)
    for (std::size_t t = 0; t < lora_target_count; ++t) {
      if (!ref[i][t]) continue;
      for (bool is_b : {false, true}) {
        const Tensor &x = is_b ? got[i][t]->b : got[i][t]->a, &y = is_b ? ref[i][t]->b : ref[i][t]->a;
        for (std::int64_t j = 0; j < y.numel(); ++j) {
          diff += (x.at(j) - y.at(j)) * (x.at(j) - y.at(j));
          norm += y.at(j) * y.at(j);
        }
      }
    }
  return std::sqrt(diff / norm);
}

}  // namespace lorafast::testing
