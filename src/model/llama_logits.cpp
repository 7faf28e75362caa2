// Next-token logits of a context by the full Llama forward pass (no cache): the
// reference each CachedDecoder step is tested against.
#include "lorafast/decoder.hpp"
#include "model/llama_activations.hpp"

namespace lorafast {

template <class T>
std::vector<double> llama_next_logits(const LlamaWeights<T>& weights, const GptLora<T>* lora,
                                      std::span<const std::int32_t> context) {
  const GptConfig& cfg = weights.config;
  const auto length = static_cast<std::int64_t>(context.size());
  TokenBatch batch{1, length, std::vector<std::int32_t>(context.begin(), context.end())};
  batch.tokens.push_back(0);  // llama_forward reads windows of T + 1 tokens (the last one only a target)
  validate_tokens(batch, cfg);
  if (lora != nullptr) validate_gpt_lora(*lora, cfg, "adapter");
  LlamaActivations<T> act;
  llama_forward(weights, lora, batch, AttentionRequest{}, Keep::last, act);
  const T* h = act.norm_out.data() + (length - 1) * cfg.n_embd;  // [D]
  const T* head = weights.head().template data<T>();             // [V, D]
  std::vector<double> logits(static_cast<std::size_t>(cfg.vocab_size));
  for (std::int64_t j = 0; j < cfg.vocab_size; ++j) {
    double dot = 0;
    for (std::int64_t c = 0; c < cfg.n_embd; ++c) dot += static_cast<double>(h[c]) * static_cast<double>(head[j * cfg.n_embd + c]);
    logits[static_cast<std::size_t>(j)] = dot;
  }
  return logits;
}

template std::vector<double> llama_next_logits<float>(const LlamaWeights<float>&, const GptLora<float>*,
                                                      std::span<const std::int32_t>);
template std::vector<double> llama_next_logits<double>(const LlamaWeights<double>&, const GptLora<double>*,
                                                       std::span<const std::int32_t>);

}  // namespace lorafast
