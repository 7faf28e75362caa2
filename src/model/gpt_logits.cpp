// Next-token logits of a context: the forward pass of gpt_forward.cpp (one window,
// no activations kept) and the tied LM head on the last position only.
#include <algorithm>

#include "lorafast/gpt_generate.hpp"
#include "model/gpt_activations.hpp"

namespace lorafast {

template <class T>
std::vector<double> gpt_next_logits(const GptWeights<T>& weights, const GptLora<T>* lora,
                                    std::span<const std::int32_t> context) {
  const GptConfig& cfg = weights.config;
  const auto length = static_cast<std::int64_t>(context.size());
  // gpt_forward reads windows of T + 1 tokens (the last one is only a target).
  TokenBatch batch{1, length, std::vector<std::int32_t>(context.begin(), context.end())};
  batch.tokens.push_back(0);
  validate_tokens(batch, cfg);
  if (lora != nullptr) validate_gpt_lora(*lora, cfg, "adapter");
  GptActivations<T> act;
  gpt_forward(weights, lora, batch, AttentionRequest{}, Keep::last, act);
  const T* h = act.lnf_out.data() + (length - 1) * cfg.n_embd;  // [D]
  const T* wte = weights.wte.template data<T>();                // [V, D]
  std::vector<double> logits(static_cast<std::size_t>(cfg.vocab_size));
  for (std::int64_t j = 0; j < cfg.vocab_size; ++j) {
    double dot = 0;
    for (std::int64_t c = 0; c < cfg.n_embd; ++c) dot += static_cast<double>(h[c]) * static_cast<double>(wte[j * cfg.n_embd + c]);
    logits[static_cast<std::size_t>(j)] = dot;
  }
  return logits;
}

#define LORAFAST_INSTANTIATE(T)                                                                                   \
  template std::vector<double> gpt_next_logits<T>(const GptWeights<T>&, const GptLora<T>*,                        \
                                                  std::span<const std::int32_t>);
LORAFAST_INSTANTIATE(float)
LORAFAST_INSTANTIATE(double)
#undef LORAFAST_INSTANTIATE

}  // namespace lorafast
