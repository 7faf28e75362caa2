// Soundness of the per-head score bound (SPEC.md §3.1) by brute force over all (i, j),
// on random and adversarial inputs: aligned q and k, one dominant key, constant rows,
// keys with a large common offset, L = 1.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "lorafast/certificate.hpp"

namespace lorafast {
namespace {

// Q and K of a batch: [N, L, D] each, D = H * E.
struct Projections {
  std::int64_t batch, seq_len, heads, head_dim;
  std::vector<double> q, k;
  double scale = 0.5;
  bool causal = false;  // places the centre: the first `chunk` keys' mean when causal

  Projections(std::int64_t n, std::int64_t l, std::int64_t h, std::int64_t e)
      : batch(n), seq_len(l), heads(h), head_dim(e), q(n * l * h * e), k(n * l * h * e) {}
  std::int64_t at(std::int64_t n, std::int64_t i, std::int64_t h, std::int64_t m) const {
    return ((n * seq_len + i) * heads + h) * head_dim + m;
  }
  template <class T>
  AttentionParams<T> params(const std::vector<T>& qs, const std::vector<T>& ks) const {
    AttentionParams<T> p;
    p.batch = batch;
    p.seq_len = seq_len;
    p.heads = heads;
    p.head_dim = head_dim;
    p.scale = scale;
    p.causal = causal;
    p.q = qs.data();
    p.k = ks.data();
    return p;
  }
  // Every (n, i, h, m) entry from a generator.
  void fill(const std::function<void(std::int64_t, std::int64_t, std::int64_t, std::int64_t, double&, double&)>& f) {
    for (std::int64_t n = 0; n < batch; ++n)
      for (std::int64_t i = 0; i < seq_len; ++i)
        for (std::int64_t h = 0; h < heads; ++h)
          for (std::int64_t m = 0; m < head_dim; ++m) f(n, i, h, m, q[at(n, i, h, m)], k[at(n, i, h, m)]);
  }
};

struct BruteForce {
  double centred = 0, raw = 0, gamma_q = 0, gamma_k = 0;
};

// Chunk of the causal surrogate in these tests: shorter than most sequences here.
constexpr std::int64_t chunk = 5;

// max over n, i, j of |beta q_i.(k_j - c)| and |beta q_i.k_j| for head h, in long double;
// c the mean of all keys, or of the first `chunk` when causal.
BruteForce brute_force(const Projections& s, std::int64_t h) {
  BruteForce out;
  const std::int64_t centred = s.causal ? std::min(chunk, s.seq_len) : s.seq_len;
  for (std::int64_t n = 0; n < s.batch; ++n) {
    std::vector<long double> c(s.head_dim, 0);
    for (std::int64_t j = 0; j < centred; ++j)
      for (std::int64_t m = 0; m < s.head_dim; ++m) c[m] += s.k[s.at(n, j, h, m)] / static_cast<long double>(centred);
    for (std::int64_t i = 0; i < s.seq_len; ++i)
      for (std::int64_t j = 0; j < s.seq_len; ++j) {
        long double centred = 0, raw = 0;
        for (std::int64_t m = 0; m < s.head_dim; ++m) {
          const long double q = s.q[s.at(n, i, h, m)], k = s.k[s.at(n, j, h, m)];
          centred += q * (k - c[m]);
          raw += q * k;
          out.gamma_q = std::max(out.gamma_q, std::abs(static_cast<double>(q)));
          out.gamma_k = std::max(out.gamma_k, std::abs(static_cast<double>(k)));
        }
        out.centred = std::max(out.centred, static_cast<double>(std::abs(s.scale * centred)));
        out.raw = std::max(out.raw, static_cast<double>(std::abs(s.scale * raw)));
      }
  }
  return out;
}

// Checks every head, bidirectional and causal; returns the bidirectional bounds for
// case-specific checks.
std::vector<HeadScores> expect_sound(Projections s) {
  std::vector<HeadScores> bidirectional;
  for (bool causal : {true, false}) {
    s.causal = causal;
    const auto got = measure_heads(s.params(s.q, s.k), chunk);
    EXPECT_EQ(got.size(), static_cast<std::size_t>(s.heads));
    for (std::int64_t h = 0; h < s.heads; ++h) {
      const BruteForce want = brute_force(s, h);
      EXPECT_GE(got[h].score_bound, want.centred) << "head " << h << (causal ? " causal" : "");
      EXPECT_GE(got[h].raw_score_bound, want.raw) << "head " << h;
      EXPECT_EQ(got[h].gamma_q, want.gamma_q) << "head " << h;
      EXPECT_EQ(got[h].gamma_k, want.gamma_k) << "head " << h;
    }
    bidirectional = got;
  }
  return bidirectional;
}

TEST(ScoreBound, RandomBatchedMultiHead) {
  std::mt19937_64 rng(1);
  std::normal_distribution<double> normal;
  Projections s(2, 37, 3, 5);
  s.fill([&](auto, auto, auto, auto, double& q, double& k) { q = normal(rng), k = 2 * normal(rng); });
  expect_sound(s);
}

TEST(ScoreBound, AlignedQueriesAndKeysAreTight) {
  // q_i = a_i u, k_j = b_j u: Cauchy-Schwarz is an equality, so G is attained.
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<double> uniform(-3, 3);
  Projections s(1, 29, 1, 6);
  std::vector<double> a(29), b(29);
  for (int i = 0; i < 29; ++i) a[i] = uniform(rng), b[i] = uniform(rng);
  s.fill([&](auto, auto i, auto, auto m, double& q, double& k) { q = a[i] * (m + 1), k = b[i] * (m + 1); });
  const auto got = expect_sound(s);
  const BruteForce want = brute_force(s, 0);
  EXPECT_LE(got[0].score_bound, want.centred * (1 + 1e-8));
  EXPECT_LE(got[0].raw_score_bound, want.raw * (1 + 1e-8));
}

TEST(ScoreBound, OneDominantKey) {
  std::mt19937_64 rng(3);
  std::normal_distribution<double> normal;
  Projections s(1, 50, 2, 4);
  s.fill([&](auto, auto i, auto, auto m, double& q, double& k) {
    q = 1.0 + 0.1 * normal(rng);
    k = (i == 17 ? 40.0 : 0.0) + 0.1 * normal(rng) + (m == 0 ? 1 : 0);
  });
  expect_sound(s);
}

TEST(ScoreBound, ConstantRowsGiveZeroCentredBound) {
  Projections s(2, 16, 2, 3);
  s.fill([](auto, auto, auto h, auto m, double& q, double& k) { q = 2.0 + h + m, k = -1.5 * (m + 1); });
  const auto got = expect_sound(s);
  for (const auto& head : got) {
    EXPECT_EQ(head.score_bound, 0.0);  // every key equals the mean: S is constant per row
    EXPECT_GT(head.raw_score_bound, 1.0);
  }
}

TEST(ScoreBound, CentringRemovesACommonKeyOffset) {
  std::mt19937_64 rng(4);
  std::normal_distribution<double> normal;
  Projections s(1, 64, 1, 8);
  s.fill([&](auto, auto, auto, auto m, double& q, double& k) { q = normal(rng), k = (m == 2 ? 100.0 : 0.0) + normal(rng); });
  const auto got = expect_sound(s);
  EXPECT_LT(got[0].score_bound, got[0].raw_score_bound / 10);
}

TEST(ScoreBound, SingleToken) {
  Projections s(3, 1, 2, 5);
  s.fill([](auto n, auto, auto h, auto m, double& q, double& k) { q = 1.0 + n + m, k = 3.0 - h * m; });
  const auto got = expect_sound(s);
  for (const auto& head : got) EXPECT_EQ(head.score_bound, 0.0);  // one key is its own mean
}

TEST(ScoreBound, FloatInputs) {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal;
  Projections s(1, 33, 2, 7);
  s.fill([&](auto, auto, auto, auto, double& q, double& k) {
    q = static_cast<double>(normal(rng)), k = static_cast<double>(3 * normal(rng));
  });
  const std::vector<float> qf(s.q.begin(), s.q.end()), kf(s.k.begin(), s.k.end());
  const auto got = measure_heads(s.params(qf, kf), chunk);
  for (std::int64_t h = 0; h < s.heads; ++h) {
    const BruteForce want = brute_force(s, h);  // the float values are exact in double
    EXPECT_GE(got[h].score_bound, want.centred);
    EXPECT_GE(got[h].raw_score_bound, want.raw);
  }
}

// Centring never changes the attention: softmax of row i of S and of S - beta q_i.c
// agree, with and without the causal mask.
TEST(ScoreBound, CentringKeepsTheSoftmax) {
  std::mt19937_64 rng(6);
  std::normal_distribution<double> normal;
  Projections s(1, 23, 1, 4);
  s.fill([&](auto, auto, auto, auto m, double& q, double& k) { q = normal(rng), k = 5.0 * m + normal(rng); });
  const auto c = mean_key(s.params(s.q, s.k), 0, 0, chunk);
  for (bool causal : {false, true})
    for (std::int64_t i = 0; i < s.seq_len; ++i) {
      const std::int64_t keys = causal ? i + 1 : s.seq_len;
      std::vector<double> raw(keys), centred(keys);
      double raw_sum = 0, centred_sum = 0;
      for (std::int64_t j = 0; j < keys; ++j) {
        double dot = 0, shift = 0;
        for (std::int64_t m = 0; m < s.head_dim; ++m) {
          dot += s.q[s.at(0, i, 0, m)] * s.k[s.at(0, j, 0, m)];
          shift += s.q[s.at(0, i, 0, m)] * c[m];
        }
        raw[j] = std::exp(s.scale * dot);
        centred[j] = std::exp(s.scale * (dot - shift));
        raw_sum += raw[j];
        centred_sum += centred[j];
      }
      for (std::int64_t j = 0; j < keys; ++j)
        // Both are ratios of the same exponentials up to e^{shift}: a few ulps of the sums.
        EXPECT_NEAR(raw[j] / raw_sum, centred[j] / centred_sum, 64 * std::numeric_limits<double>::epsilon());
    }
}

}  // namespace
}  // namespace lorafast
