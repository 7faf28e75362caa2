// Temperature / top-k / top-p sampling from next-token logits.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "lorafast/gpt_generate.hpp"
#include "lorafast/train_data.hpp"

namespace lorafast {

std::uint64_t SplitMix64Rng::next() {
  const std::uint64_t x = state_;  // splitmix64(x) mixes x + gamma, the next state
  state_ += 0x9e3779b97f4a7c15ull;
  return splitmix64(x);
}

double SplitMix64Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

void SamplingOptions::validate() const {
  LF_CHECK(std::isfinite(temperature) && temperature >= 0, ErrorKind::usage,
           "`temperature` must be a finite number >= 0, got ", temperature);
  LF_CHECK(top_k >= 0, ErrorKind::usage, "`top_k` must be >= 0, got ", top_k);
  LF_CHECK(top_p > 0 && top_p <= 1, ErrorKind::usage, "`top_p` must be in (0, 1], got ", top_p);
}

std::int32_t sample_token(std::span<const double> logits, const SamplingOptions& options, SplitMix64Rng& rng) {
  LF_ASSERT(!logits.empty());
  if (options.greedy || options.temperature == 0)  // the first largest logit, without sorting the vocabulary
    return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  const auto vocab = static_cast<std::int64_t>(logits.size());
  std::vector<std::int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  // Largest first, ties by the lower index.
  std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b]; });
  std::int64_t k = options.top_k > 0 ? std::min(options.top_k, vocab) : vocab;
  std::vector<double> weight(static_cast<std::size_t>(k));
  const double top = logits[order[0]];
  double sum = 0;
  for (std::int64_t i = 0; i < k; ++i) {
    weight[i] = std::exp((logits[order[i]] - top) / options.temperature);
    sum += weight[i];
  }
  if (options.top_p < 1) {  // the nucleus: the shortest prefix of mass >= top_p
    double mass = 0;
    for (std::int64_t i = 0; i < k; ++i) {
      mass += weight[i];
      if (mass >= options.top_p * sum) {
        k = i + 1;
        sum = mass;
        break;
      }
    }
  }
  const double u = rng.uniform() * sum;
  double cumulative = 0;
  for (std::int64_t i = 0; i < k; ++i) {
    cumulative += weight[i];
    if (u < cumulative) return order[i];
  }
  return order[k - 1];
}

}  // namespace lorafast
