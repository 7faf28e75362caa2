#include "lorafast/generate.hpp"

#include <algorithm>
#include <chrono>

namespace lorafast {

std::int64_t generation_positions(std::int64_t prompt_tokens, std::int64_t max_tokens) {
  return prompt_tokens + std::max<std::int64_t>(max_tokens - 1, 0);
}

template <class W>
GenerateResult generate(const W& weights, const GptLora<typename W::value_type>* lora,
                        std::span<const std::int32_t> prompt, const GenerateOptions& options, const TokenSink& sink) {
  options.sampling.validate();
  LF_CHECK(!prompt.empty(), ErrorKind::usage, "the prompt is empty: generation needs at least one token");
  LF_CHECK(options.max_tokens >= 0, ErrorKind::usage, "the token count must be >= 0, got ", options.max_tokens);
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  CachedDecoder<W> decoder(weights, lora, generation_positions(static_cast<std::int64_t>(prompt.size()), options.max_tokens));
  GenerateResult result;
  if (options.max_tokens == 0) return result;
  SplitMix64Rng rng(options.seed);
  const std::vector<double>* logits = &decoder.prefill(prompt);
  auto mark = start;
  for (std::int64_t i = 0;; ++i) {
    const std::int32_t token = sample_token(*logits, options.sampling, rng);
    result.tokens.push_back(token);
    if (sink) sink(token);
    if (i == 0) {
      mark = Clock::now();
      result.prefill_seconds = std::chrono::duration<double>(mark - start).count();
    }
    result.stopped_at_eos = std::find(options.eos.begin(), options.eos.end(), token) != options.eos.end();
    if (result.stopped_at_eos || i + 1 == options.max_tokens) break;
    logits = &decoder.step(token);
  }
  result.decode_seconds = std::chrono::duration<double>(Clock::now() - mark).count();
  return result;
}

template GenerateResult generate(const GptWeights<float>&, const GptLora<float>*, std::span<const std::int32_t>,
                                 const GenerateOptions&, const TokenSink&);
template GenerateResult generate(const GptWeights<double>&, const GptLora<double>*, std::span<const std::int32_t>,
                                 const GenerateOptions&, const TokenSink&);
template GenerateResult generate(const LlamaWeights<float>&, const GptLora<float>*, std::span<const std::int32_t>,
                                 const GenerateOptions&, const TokenSink&);
template GenerateResult generate(const LlamaWeights<double>&, const GptLora<double>*, std::span<const std::int32_t>,
                                 const GenerateOptions&, const TokenSink&);

}  // namespace lorafast
