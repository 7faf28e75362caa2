// Text generation with a GPT-2 model (and optionally its LoRA adapters): the
// next-token logits of a context, temperature / top-k sampling and the
// autoregressive loop, each new token handed to a callback as soon as it exists.
// There is no key/value cache: each token reruns the forward pass over the context
// (the last n_positions tokens), O(T^2) attention per token.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "lorafast/gpt.hpp"
#include "lorafast/gpt_lora.hpp"

namespace lorafast {

// logits[j] = ln_f(h_last) . wte[j] for the last position of `context` (1 to
// n_positions tokens in [0, V)); `lora` may be nullptr. Error(bad_input) otherwise.
template <class T>
std::vector<double> gpt_next_logits(const GptWeights<T>& weights, const GptLora<T>* lora,
                                    std::span<const std::int32_t> context);

// A SplitMix64 stream (state += golden gamma, output = mix(state)): small,
// portable and reproducible across platforms and standard libraries.
class SplitMix64Rng {
 public:
  explicit SplitMix64Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next();
  double uniform();  // in [0, 1), 53 random bits
 private:
  std::uint64_t state_;
};

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy (the first largest logit)
  std::int64_t top_k = 0;    // sample among the k largest logits; 0: all
  // temperature >= 0 finite, top_k >= 0; Error(usage).
  void validate() const;
};

// Draws a token from softmax(logits / temperature) restricted to the top k
// (ties broken by the lower index), by inverting the CDF at rng.uniform().
std::int32_t sample_token(std::span<const double> logits, const SamplingOptions& options, SplitMix64Rng& rng);

// Generates `count` tokens after `prompt` (non-empty), calling on_token(token)
// after each; the context is the last n_positions tokens. Returns the new tokens.
template <class T>
std::vector<std::int32_t> gpt_generate(const GptWeights<T>& weights, const GptLora<T>* lora,
                                       std::span<const std::int32_t> prompt, std::int64_t count,
                                       const SamplingOptions& options, std::uint64_t seed,
                                       const std::function<void(std::int32_t)>& on_token = {});

}  // namespace lorafast
