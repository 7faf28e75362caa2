// Next-token logits of a context by the decoder's full forward pass (one window, no
// activations kept, no cache) and the LM head on the last position only (soft-capped
// as the spec says): what each CachedDecoder step is tested against.
#include "lorafast/decoder.hpp"
#include "model/decoder_activations.hpp"

namespace lorafast {
namespace {

template <class T>
std::vector<double> next_logits(const DecoderView<T>& m, const GptLora<T>* lora, std::span<const std::int32_t> context) {
  const std::int64_t d = m.spec.dim, vocab = m.spec.vocab;
  const auto length = static_cast<std::int64_t>(context.size());
  // The forward pass reads windows of T + 1 tokens (the last one is only a target).
  TokenBatch batch{1, length, std::vector<std::int32_t>(context.begin(), context.end())};
  batch.tokens.push_back(0);
  validate_tokens(batch, *m.config);
  if (lora != nullptr) validate_gpt_lora(*lora, *m.config, "adapter");
  DecoderActivations<T> act;
  decoder_forward(m, lora, batch, AttentionRequest{}, Keep::last, act);
  const T* h = act.final_out.data() + (length - 1) * d;  // [D]
  const Tensor& head = *m.tensors.head;                  // [V, D], in T or bf16
  std::vector<double> logits(static_cast<std::size_t>(vocab));
  for (std::int64_t j = 0; j < vocab; ++j) {
    double dot = 0;
    for (std::int64_t c = 0; c < d; ++c) dot += static_cast<double>(h[c]) * head.at(j * d + c);
    logits[static_cast<std::size_t>(j)] = dot;
  }
  if (m.spec.logit_softcap > 0) soft_cap(logits.data(), vocab, m.spec.logit_softcap);
  return logits;
}

}  // namespace

template <class T>
std::vector<double> gpt_next_logits(const GptWeights<T>& weights, const GptLora<T>* lora,
                                    std::span<const std::int32_t> context) {
  return next_logits(decoder_view(weights), lora, context);
}

template <class T>
std::vector<double> llama_next_logits(const LlamaWeights<T>& weights, const GptLora<T>* lora,
                                      std::span<const std::int32_t> context) {
  return next_logits(decoder_view(weights), lora, context);
}

#define LORAFAST_INSTANTIATE(T)                                                                                   \
  template std::vector<double> gpt_next_logits<T>(const GptWeights<T>&, const GptLora<T>*,                        \
                                                  std::span<const std::int32_t>);                                 \
  template std::vector<double> llama_next_logits<T>(const LlamaWeights<T>&, const GptLora<T>*,                    \
                                                    std::span<const std::int32_t>);
LORAFAST_INSTANTIATE(float)
LORAFAST_INSTANTIATE(double)
#undef LORAFAST_INSTANTIATE

}  // namespace lorafast
