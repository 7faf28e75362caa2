// GPT-2's and the Llama family's weight initialisation, from a portable seeded normal stream.
#include <algorithm>
#include <cmath>
#include <numbers>

#include "lorafast/gpt_generate.hpp"
#include "lorafast/pretrain.hpp"

namespace lorafast {
namespace {

// Box-Muller: each pair of uniforms gives one deviate (the cosine one); 1 - u is in
// (0, 1], so the logarithm is finite.
double normal(SplitMix64Rng& rng) {
  const double u1 = 1.0 - rng.uniform(), u2 = rng.uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

template <class T>
GptWeights<T> init_gpt_weights(const GptConfig& config, std::uint64_t seed) {
  config.validate("the model configuration");
  constexpr double std_dev = 0.02;
  const double residual_std = std_dev / std::sqrt(2.0 * static_cast<double>(config.n_layer));
  GptWeights<T> w = zero_gpt_weights<T>(config);
  SplitMix64Rng rng(seed);
  for (auto& [name, tensor] : gpt_named_tensors(w)) {
    T* p = tensor->template data<T>();
    if (ends_with(name, ".bias")) continue;  // stays 0 (LayerNorm biases too)
    if (name.find("ln_") != std::string::npos) {
      for (std::int64_t i = 0; i < tensor->numel(); ++i) p[i] = T(1);
      continue;
    }
    const bool residual = ends_with(name, "attn.c_proj.weight") || ends_with(name, "mlp.c_proj.weight");
    const double s = residual ? residual_std : std_dev;
    for (std::int64_t i = 0; i < tensor->numel(); ++i) p[i] = static_cast<T>(s * normal(rng));
  }
  return w;
}

template <class T>
LlamaWeights<T> init_llama_weights(const GptConfig& config, std::uint64_t seed) {
  LF_CHECK(config.is_llama(), ErrorKind::bad_input, "init_llama_weights: not a Llama-family configuration");
  config.validate("the model configuration");
  const double s = config.llama.initializer_range;
  LlamaWeights<T> w = zero_llama_weights<T>(config);
  SplitMix64Rng rng(seed);
  for (auto& x : llama_named_tensors(w)) {
    T* p = x.tensor->template data<T>();
    if (ends_with(x.name, ".bias")) continue;  // stays 0
    if (x.tensor->shape().size() == 1) {       // an RMSNorm weight
      std::fill(p, p + x.tensor->numel(), T(1));
      continue;
    }
    for (std::int64_t i = 0; i < x.tensor->numel(); ++i) p[i] = static_cast<T>(s * normal(rng));
  }
  return w;
}

template LlamaWeights<float> init_llama_weights<float>(const GptConfig&, std::uint64_t);
template LlamaWeights<double> init_llama_weights<double>(const GptConfig&, std::uint64_t);
template GptWeights<float> init_gpt_weights<float>(const GptConfig&, std::uint64_t);
template GptWeights<double> init_gpt_weights<double>(const GptConfig&, std::uint64_t);

}  // namespace lorafast
