// The fused, chunked LM head + cross-entropy (model/lm_head_loss.hpp) against its
// definition written out in double, on row counts around the 512-row chunk (one
// chunk, a full one, one row more, two and a partial third), forward only and with
// d_h and d_wte, on 1, 2 and 3 threads (V = 37: slices on 16-entry boundaries with
// a short last one; the model tests' V <= 13 on 2 threads leave one slice empty);
// and with Gemma 3's logit soft-capping, forward and gradient.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "lorafast/threads.hpp"
#include "model/lm_head_loss.hpp"

namespace lorafast {
namespace {

struct Reference {
  double loss = 0;
  std::vector<double> d_h, d_wte;
};

// loss = mean_r (logsumexp(z_r) - z_r[target]), z = h wte^T, d_logits = (softmax - onehot) / rows;
// with a cap c > 0, z = c tanh(h wte^T / c) and d_logits times 1 - tanh^2.
Reference reference(std::int64_t rows, std::int64_t dim, std::int64_t vocab, const std::vector<double>& h,
                    const std::vector<double>& wte, const std::vector<std::int32_t>& targets, double cap) {
  Reference ref{0, std::vector<double>(h.size()), std::vector<double>(wte.size())};
  std::vector<double> logits(static_cast<std::size_t>(vocab));
  for (std::int64_t r = 0; r < rows; ++r) {
    double max = -INFINITY;
    for (std::int64_t j = 0; j < vocab; ++j) {
      double dot = 0;
      for (std::int64_t c = 0; c < dim; ++c) dot += h[r * dim + c] * wte[j * dim + c];
      logits[j] = cap > 0 ? cap * std::tanh(dot / cap) : dot;
      max = std::max(max, logits[j]);
    }
    double sum = 0;
    for (double l : logits) sum += std::exp(l - max);
    const double lse = max + std::log(sum);
    ref.loss += (lse - logits[targets[r]]) / static_cast<double>(rows);
    for (std::int64_t j = 0; j < vocab; ++j) {
      const double slope = cap > 0 ? 1 - (logits[j] / cap) * (logits[j] / cap) : 1;
      const double g = slope * (std::exp(logits[j] - lse) - (j == targets[r] ? 1.0 : 0.0)) / static_cast<double>(rows);
      for (std::int64_t c = 0; c < dim; ++c) {
        ref.d_h[r * dim + c] += g * wte[j * dim + c];
        ref.d_wte[j * dim + c] += g * h[r * dim + c];
      }
    }
  }
  return ref;
}

double relative_error(const std::vector<double>& ref, const auto& got) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    num += (static_cast<double>(got[i]) - ref[i]) * (static_cast<double>(got[i]) - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

// Double: the same sums in another order, ~1e-16; 1e-12 leaves room and catches any
// wrong term. Float: logits and exponentials in f32 (exp_approx: ~2 ulp) over D = 24
// terms; 1e-5 (~100 f32 ulps, the f32 floor of test_gpt_vs_torch.py) bounds that.
template <class T>
void check_rows(std::int64_t rows, double bound, double cap = 0) {
  const std::int64_t dim = 24, vocab = 37;
  std::mt19937_64 rng(static_cast<std::uint64_t>(rows));
  std::normal_distribution<double> normal;
  std::vector<double> h(static_cast<std::size_t>(rows * dim)), wte(static_cast<std::size_t>(vocab * dim));
  for (double& x : h) x = normal(rng);
  for (double& x : wte) x = 0.5 * normal(rng);
  std::vector<std::int32_t> targets(static_cast<std::size_t>(rows));
  for (auto& t : targets) t = static_cast<std::int32_t>(rng() % vocab);
  const Reference ref = reference(rows, dim, vocab, h, wte, targets, cap);
  const std::vector<T> h_t(h.begin(), h.end()), wte_t(wte.begin(), wte.end());
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    std::vector<T> d_h(h.size()), d_wte(wte.size());
    const double loss = lm_head_loss(LmHeadLossParams<T>{rows, dim, vocab, h_t.data(), wte_t.data(), targets.data(),
                                                         d_h.data(), d_wte.data(), nullptr, 0, cap});
    EXPECT_NEAR(loss, ref.loss, bound * ref.loss) << rows << " rows, " << threads << " threads";
    EXPECT_LT(relative_error(ref.d_h, d_h), bound) << rows << " rows, " << threads << " threads";
    EXPECT_LT(relative_error(ref.d_wte, d_wte), bound) << rows << " rows, " << threads << " threads";
    const double forward_only = lm_head_loss(LmHeadLossParams<T>{rows, dim, vocab, h_t.data(), wte_t.data(),
                                                                 targets.data(), nullptr, nullptr, nullptr, 0, cap});
    EXPECT_EQ(forward_only, loss);
  }
  set_num_threads(0);
}

TEST(LmHeadLoss, MatchesTheDefinitionAcrossChunks) {
  for (std::int64_t rows : {1, 511, 512, 513, 1100}) {
    check_rows<double>(rows, 1e-12);
    check_rows<float>(rows, 1e-5);
  }
}

// Logits h . wte ~ N(0, 6) against a cap of 2: most are squashed, so a missing
// tanh or 1 - tanh^2 is an O(1) error; the bounds are those above (a tanh per logit
// adds a few ulps).
TEST(LmHeadLoss, SoftCappedMatchesTheDefinition) {
  for (std::int64_t rows : {1, 513}) {
    check_rows<double>(rows, 1e-12, 2.0);
    check_rows<float>(rows, 1e-5, 2.0);
  }
}

}  // namespace
}  // namespace lorafast
