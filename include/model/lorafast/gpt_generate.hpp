// Next-token logits of a GPT-2 model by a full forward pass, and sampling a token
// from logits (temperature, top-k, top-p, greedy). Decoding with a key/value cache
// is decoder.hpp; the generation loop is generate.hpp (train layer).
#pragma once

#include <cstdint>
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
  double top_p = 1.0;        // then among the fewest most likely tokens whose probability sums to >= top_p
  bool greedy = false;       // argmax (the first largest logit), whatever the other options say
  // temperature >= 0 finite, top_k >= 0, 0 < top_p <= 1; Error(usage).
  void validate() const;
};

// Draws a token from softmax(logits / temperature) restricted to the top k (ties
// broken by the lower index), then to the nucleus of mass top_p (the token that
// reaches top_p included), by inverting the CDF at rng.uniform(); greedy or
// temperature 0: the first largest logit, no draw.
std::int32_t sample_token(std::span<const double> logits, const SamplingOptions& options, SplitMix64Rng& rng);

}  // namespace lorafast
