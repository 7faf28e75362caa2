// The fast path (SPEC §3.2b, §3.3) against the dense surrogate reference, its own
// finite differences, and the exact gradient as the degree grows.
#include <gtest/gtest.h>

#include <cmath>

#include "lorafast/fast_attention.hpp"
#include "lorafast/threads.hpp"
#include "support/attention_buffers.hpp"
#include "support/compare.hpp"

namespace lorafast {
namespace {

using testing::AttentionBuffers;
using testing::head_relative_error;

struct FastCase {
  std::int64_t batch, seq_len, heads, head_dim;
  bool causal;
  int degree;
  std::int64_t chunk;
  bool center;
};

std::string name(const FastCase& c) {
  return cat(c.causal ? "causal" : "bidir", "_N", c.batch, "_L", c.seq_len, "_H", c.heads, "_E", c.head_dim, "_g",
             c.degree, "_C", c.chunk, c.center ? "_centred" : "_raw");
}

void PrintTo(const FastCase& c, std::ostream* out) { *out << name(c); }

// Runs the reference surrogate on every sequence: o and the three gradients.
struct Expected {
  Tensor o, d_q, d_k, d_v;
};
Expected reference(const AttentionBuffers& b, double scale, bool causal, const SurrogateConfig& cfg) {
  Expected ex{b.o, b.d_q, b.d_k, b.d_v};
  for (std::int64_t n = 0; n < b.batch; ++n) {
    const auto pr = b.problem(n, scale, causal);
    ref::surrogate_fwd(pr, cfg, matrix<double>(ex.o, n));
    ref::surrogate_bwd(pr, cfg, matrix<double>(b.d_o, n), matrix<double>(ex.d_q, n), matrix<double>(ex.d_k, n),
                       matrix<double>(ex.d_v, n));
  }
  return ex;
}

class FastVsSurrogateReference : public ::testing::TestWithParam<FastCase> {};

TEST_P(FastVsSurrogateReference, EveryHeadMatches) {
  const FastCase c = GetParam();
  const AttentionBuffers b(c.batch, c.seq_len, c.heads, c.head_dim, 0.5, 11);
  const double scale = 1 / std::sqrt(static_cast<double>(c.head_dim));
  const SurrogateConfig cfg{c.degree, c.center, c.chunk};
  const auto expected = reference(b, scale, c.causal, cfg);
  set_num_threads(2);
  auto t64 = b.typed<double>(scale, c.causal);
  auto t32 = b.typed<float>(scale, c.causal);
  for (std::int64_t h = 0; h < c.heads; ++h) {
    fast_attention_fwd(t64.params, h, cfg);
    fast_attention_bwd(t64.params, h, cfg);
    fast_attention_fwd(t32.params, h, cfg);
    fast_attention_bwd(t32.params, h, cfg);
  }
  set_num_threads(0);
  // f64: features, GEMMs and scans reorder sums of O(L) positive weights; a few
  // hundred ulps at L ~ 100 covers it. f32: the same with float's unit roundoff, and
  // n*u over the longest sum (L keys or F features).
  const double tol64 = 1e3 * testing::unit_roundoff_f64;
  const double tol32 = 4 * static_cast<double>(std::max<std::int64_t>(c.seq_len, 64)) * testing::unit_roundoff_f32;
  for (std::int64_t h = 0; h < c.heads; ++h) {
    EXPECT_LE(head_relative_error(t64.o, expected.o, h, c.head_dim), tol64) << "o head " << h;
    EXPECT_LE(head_relative_error(t64.d_q, expected.d_q, h, c.head_dim), tol64) << "d_q head " << h;
    EXPECT_LE(head_relative_error(t64.d_k, expected.d_k, h, c.head_dim), tol64) << "d_k head " << h;
    EXPECT_LE(head_relative_error(t64.d_v, expected.d_v, h, c.head_dim), tol64) << "d_v head " << h;
    EXPECT_LE(head_relative_error(t32.d_q, expected.d_q, h, c.head_dim), tol32) << "f32 d_q head " << h;
    EXPECT_LE(head_relative_error(t32.d_k, expected.d_k, h, c.head_dim), tol32) << "f32 d_k head " << h;
    EXPECT_LE(head_relative_error(t32.d_v, expected.d_v, h, c.head_dim), tol32) << "f32 d_v head " << h;
  }
}

INSTANTIATE_TEST_SUITE_P(
    AwkwardSizes, FastVsSurrogateReference,
    ::testing::Values(FastCase{1, 1, 1, 1, false, 2, 64, true}, FastCase{1, 1, 1, 3, true, 4, 64, true},
                      FastCase{2, 7, 3, 5, false, 4, 64, true}, FastCase{1, 97, 1, 1, true, 6, 64, false},
                      FastCase{2, 130, 1, 3, true, 4, 64, true}, FastCase{1, 130, 3, 3, true, 2, 16, true},
                      FastCase{1, 128, 2, 8, false, 4, 64, false}, FastCase{1, 97, 1, 5, true, 0, 16, true},
                      FastCase{2, 65, 1, 8, true, 4, 64, true}, FastCase{1, 300, 1, 4, false, 6, 64, true},
                      // The dispatcher's chunk (128) on lengths that are not multiples of it,
                      // and wider heads whose E+1 columns take two register passes.
                      FastCase{1, 300, 2, 5, true, 4, 128, true}, FastCase{2, 129, 1, 8, true, 2, 128, false},
                      FastCase{1, 257, 1, 16, true, 2, 128, true}, FastCase{1, 1025, 1, 3, false, 4, 128, true},
                      FastCase{1, 1025, 1, 3, true, 4, 128, true}, FastCase{1, 40, 1, 24, false, 2, 128, true}),
    [](const auto& info) { return name(info.param); });

// The fast gradient is the exact gradient of the surrogate loss 1/2 ||O~ - Y||^2:
// central differences of that loss through fast_attention_fwd, with raw and with
// centred keys (then the surrogate depends on every key through the mean key too).
// h = 1e-5 in double: error ~1e-9 relative.
TEST(FastAttention, FiniteDifferencesOfItsOwnLoss) {
  for (auto [causal, center] : {std::pair{false, false}, {false, true}, {true, false}, {true, true}}) {
    const AttentionBuffers b(1, 21, 2, 3, 0.7, 5);
    const double scale = 0.6;
    const SurrogateConfig cfg{4, center, 8};
    auto t = b.typed<double>(scale, causal);
    auto loss = [&](AttentionBuffers::Typed<double>& tb) {
      for (std::int64_t h = 0; h < 2; ++h) fast_attention_fwd(tb.params, h, cfg);
      double s = 0;
      for (std::int64_t i = 0; i < tb.o.numel(); ++i) s += 0.5 * std::pow(tb.o.at(i) - b.d_o.at(i), 2);
      return s;
    };
    loss(t);
    // dO = O~ - Y with Y = b.d_o.
    Tensor d_o(DType::f64, t.o.shape());
    for (std::int64_t i = 0; i < d_o.numel(); ++i) d_o.data<double>()[i] = t.o.at(i) - b.d_o.at(i);
    t.params.d_o = d_o.data<double>();
    for (std::int64_t h = 0; h < 2; ++h) fast_attention_bwd(t.params, h, cfg);
    for (auto [input, grad] : {std::pair{&t.q, &t.d_q}, {&t.k, &t.d_k}, {&t.v, &t.d_v}})
      for (std::int64_t i = 0; i < input->numel(); i += 7) {
        const double saved = input->data<double>()[i], step = 1e-5;
        input->data<double>()[i] = saved + step;
        const double plus = loss(t);
        input->data<double>()[i] = saved - step;
        const double minus = loss(t);
        input->data<double>()[i] = saved;
        EXPECT_NEAR((plus - minus) / (2 * step), grad->at(i), 1e-7)
            << (causal ? "causal " : "bidir ") << (center ? "centred " : "raw ") << i;
      }
  }
}

// Causality of the centred surrogate: output row i may not depend on a key after it.
// The centre is the mean of the first chunk's keys, so changing a key of chunk 3 leaves
// the rows of chunks 0-2 as they were, up to rounding (the q/k balance factor sees every
// key). A centre averaged over all keys moved those rows by 7e-2 here.
TEST(FastAttention, CausalOutputIgnoresLaterKeys) {
  const std::int64_t l = 40, chunk = 8, changed = 3 * chunk + 5;
  const AttentionBuffers b(1, l, 2, 3, 0.8, 12);
  const SurrogateConfig cfg{2, true, chunk};
  auto before = b.typed<double>(0.7, true), after = b.typed<double>(0.7, true);
  for (std::int64_t m = 0; m < after.k.shape()[2]; ++m) after.k.data<double>()[changed * after.k.shape()[2] + m] += 4.0;
  for (std::int64_t h = 0; h < 2; ++h) {
    fast_attention_fwd(before.params, h, cfg);
    fast_attention_fwd(after.params, h, cfg);
  }
  const std::int64_t d = before.o.shape()[2];
  double earlier = 0, later = 0;  // largest change of a row before / from the changed key's chunk
  for (std::int64_t i = 0; i < l; ++i)
    for (std::int64_t m = 0; m < d; ++m) {
      const double change = std::abs(after.o.at(i * d + m) - before.o.at(i * d + m));
      (i < 3 * chunk ? earlier : later) = std::max(i < 3 * chunk ? earlier : later, change);
    }
  EXPECT_LT(earlier, 1e-13);
  EXPECT_GT(later, 1e-3);  // the change itself is visible where it may be
}

// With bounded scores the surrogate's gradient converges to the exact one: the error
// must fall with every step of the degree (geometric, SPEC §3.1).
TEST(FastAttention, ConvergesToExactAsDegreeGrows) {
  for (bool causal : {false, true}) {
    const AttentionBuffers b(1, 200, 1, 8, 0.3, 9);
    const double scale = 1 / std::sqrt(8.0);
    Tensor d_q = b.d_q, d_k = b.d_k, d_v = b.d_v, o = b.o;
    const auto pr = b.problem(0, scale, causal);
    ref::attention_bwd(pr, matrix<double>(b.d_o), matrix<double>(d_q), matrix<double>(d_k), matrix<double>(d_v));
    double previous = INFINITY, at_degree_2 = 0;
    for (int degree : {0, 2, 4, 6}) {
      auto t = b.typed<double>(scale, causal);
      const SurrogateConfig cfg{degree, true, 64};
      ref::surrogate_fwd(pr, cfg, matrix<double>(t.o));  // O~ for the backward's delta
      fast_attention_bwd(t.params, 0, cfg);
      const double error = head_relative_error(t.d_k, d_k, 0, 8) + head_relative_error(t.d_q, d_q, 0, 8);
      EXPECT_LT(error, previous) << "degree " << degree << (causal ? " causal" : " bidir");
      previous = error;
      if (degree == 2) at_degree_2 = error;
    }
    // Geometric convergence: two more degree steps gain well over a factor of 10.
    EXPECT_LT(previous, 0.1 * at_degree_2) << (causal ? "causal" : "bidir");
  }
}

}  // namespace
}  // namespace lorafast
