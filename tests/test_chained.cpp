// The chained low-rank gradient (SPEC.md §3.2a, §3.3) against the dense double oracle
// ref::chained_bwd (the same formula with the L x L P~ formed explicitly), and against
// the exact gradient as the Taylor degree grows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "lorafast/fast_attention.hpp"
#include "lorafast/features.hpp"
#include "lorafast/threads.hpp"
#include "ref/reference.hpp"
#include "support/compare.hpp"

namespace lorafast {
namespace {

struct ChainedCase {
  std::int64_t len = 7, dim = 3, heads = 1, batch = 1, chunk = 64;
  int degree = 4;
  bool causal = false, center = true;

  std::int64_t model_dim() const { return heads * dim; }
  std::int64_t head() const { return heads / 2; }  // the middle head: neighbours on both sides
  SurrogateConfig config() const { return {degree, center, chunk}; }
  std::string name() const {
    return "L" + std::to_string(len) + "_E" + std::to_string(dim) + "_g" + std::to_string(degree) +
           (causal ? "_causal_C" + std::to_string(chunk) : "_bidir") + "_H" + std::to_string(heads) + "_N" +
           std::to_string(batch) + (center ? "_centred" : "_raw");
  }
};

// q, k, v, dO: [N, L, D] in double, every value exactly representable in f32 so the
// f32 runs see the same inputs as the oracle.
struct Inputs {
  std::vector<double> q, k, v, d_o;
  double scale = 1;
};

// Gaussian inputs with q rescaled so that the score bound of the selected head,
// G = beta max_i |q_i| max_j |k_j - c|, equals `bound` in every sequence.
Inputs make_inputs(const ChainedCase& c, double bound, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  const std::int64_t size = c.batch * c.len * c.model_dim(), d = c.model_dim();
  Inputs in;
  in.scale = 1 / std::sqrt(static_cast<double>(c.dim));
  for (auto* x : {&in.q, &in.k, &in.v, &in.d_o}) {
    x->resize(static_cast<std::size_t>(size));
    for (double& value : *x) value = static_cast<float>(normal(rng));
  }
  for (std::int64_t n = 0; n < c.batch; ++n) {
    const std::int64_t base = n * c.len * d + c.head() * c.dim;
    std::vector<double> centre(static_cast<std::size_t>(c.dim), 0.0);
    for (std::int64_t j = 0; j < c.len && c.center; ++j)
      for (std::int64_t m = 0; m < c.dim; ++m) centre[m] += in.k[base + j * d + m] / static_cast<double>(c.len);
    double q_max = 0, k_max = 0;
    for (std::int64_t i = 0; i < c.len; ++i) {
      double qn = 0, kn = 0;
      for (std::int64_t m = 0; m < c.dim; ++m) {
        qn += in.q[base + i * d + m] * in.q[base + i * d + m];
        kn += std::pow(in.k[base + i * d + m] - centre[m], 2);
      }
      q_max = std::max(q_max, std::sqrt(qn));
      k_max = std::max(k_max, std::sqrt(kn));
    }
    // A single centred key is 0: any q gives G = 0, nothing to rescale.
    const double factor = k_max > 0 ? bound / (in.scale * q_max * k_max) : 1.0;
    for (std::int64_t i = 0; i < c.len; ++i)
      for (std::int64_t m = 0; m < c.dim; ++m) {
        double& x = in.q[base + i * d + m];
        x = static_cast<float>(x * factor);
      }
  }
  return in;
}

struct Grads {
  std::vector<double> o, d_q, d_k, d_v;  // [N, L, D]
};

ref::AttentionProblem problem(const ChainedCase& c, const Inputs& in, std::int64_t n) {
  const std::int64_t d = c.model_dim(), off = n * c.len * d;
  return {{in.q.data() + off, c.len, d, d}, {in.k.data() + off, c.len, d, d}, {in.v.data() + off, c.len, d, d},
          c.heads, in.scale, c.causal};
}

// The oracle, one sequence at a time: O~ from ref::surrogate_fwd and the gradient
// from ref::chained_bwd (or the exact ref::attention_bwd when `exact`).
Grads reference(const ChainedCase& c, const Inputs& in, bool exact = false) {
  const std::int64_t d = c.model_dim(), size = c.batch * c.len * d;
  Grads g;
  for (auto* x : {&g.o, &g.d_q, &g.d_k, &g.d_v}) x->assign(static_cast<std::size_t>(size), 0.0);
  for (std::int64_t n = 0; n < c.batch; ++n) {
    const std::int64_t off = n * c.len * d;
    auto view = [&](std::vector<double>& x) { return MatrixView<double>{x.data() + off, c.len, d, d}; };
    const MatrixView<const double> d_o{in.d_o.data() + off, c.len, d, d};
    const auto pr = problem(c, in, n);
    ref::surrogate_fwd(pr, c.config(), view(g.o));
    if (exact)
      ref::attention_bwd(pr, d_o, view(g.d_q), view(g.d_k), view(g.d_v));
    else
      ref::chained_bwd(pr, c.config(), d_o, view(g.d_q), view(g.d_k), view(g.d_v));
  }
  return g;
}

// Sentinel in the outputs: columns of the other heads must keep it.
constexpr double untouched = 7.25;

template <class T>
Grads run_chained(const ChainedCase& c, const Inputs& in, const std::vector<double>& o_tilde) {
  auto cast = [](const std::vector<double>& x) { return std::vector<T>(x.begin(), x.end()); };
  const std::vector<T> q = cast(in.q), k = cast(in.k), v = cast(in.v), d_o = cast(in.d_o);
  std::vector<T> o = cast(o_tilde), d_q(q.size(), T(untouched)), d_k = d_q, d_v = d_q;
  AttentionParams<T> p;
  p.batch = c.batch;
  p.seq_len = c.len;
  p.heads = c.heads;
  p.head_dim = c.dim;
  p.scale = in.scale;
  p.causal = c.causal;
  p.q = q.data();
  p.k = k.data();
  p.v = v.data();
  p.o = o.data();
  p.d_o = d_o.data();
  p.d_q = d_q.data();
  p.d_k = d_k.data();
  p.d_v = d_v.data();
  chained_attention_bwd(p, c.head(), c.config());
  Grads g;
  g.d_q.assign(d_q.begin(), d_q.end());
  g.d_k.assign(d_k.begin(), d_k.end());
  g.d_v.assign(d_v.begin(), d_v.end());
  return g;
}

// ||got - want||_F / ||want||_F over the selected head's columns; counts the entries
// of the other heads that changed.
struct HeadError {
  double rel = 0;
  std::int64_t others_changed = 0;
};
HeadError head_error(const ChainedCase& c, const std::vector<double>& got, const std::vector<double>& want) {
  double diff = 0, norm = 0;
  HeadError out;
  for (std::size_t x = 0; x < got.size(); ++x) {
    const std::int64_t col = static_cast<std::int64_t>(x) % c.model_dim();
    if (col / c.dim == c.head()) {
      diff += (got[x] - want[x]) * (got[x] - want[x]);
      norm += want[x] * want[x];
    } else if (got[x] != untouched) {
      ++out.others_changed;
    }
  }
  out.rel = norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
  return out;
}

// Largest relative error of dQ, dK, dV; fails on any change outside the head.
double max_error(const ChainedCase& c, const Grads& got, const Grads& want) {
  double worst = 0;
  for (auto [g, w, name] : {std::tuple{&got.d_q, &want.d_q, "dQ"}, {&got.d_k, &want.d_k, "dK"},
                            {&got.d_v, &want.d_v, "dV"}}) {
    const HeadError e = head_error(c, *g, *w);
    EXPECT_EQ(e.others_changed, 0) << name << " changed another head's columns";
    worst = std::max(worst, e.rel);
  }
  return worst;
}

// Summands behind one gradient entry: a key-side state sums L rows, it is applied
// through F features and an E x E Kronecker block, and the exact in-chunk part sums
// C <= L keys; three such stages (state, application, assembly).
double summation_length(const ChainedCase& c) {
  const double f = static_cast<double>(taylor_feature_count(c.dim, c.degree));
  return 3.0 * (static_cast<double>(c.len) + f + static_cast<double>(c.dim * c.dim));
}

// Score bound of the reference sweep: large enough that the Taylor weights are far from
// exp (g = 2 at s = -2 gives 1 where exp gives 0.14), small enough to keep the mixed-sign
// feature sums well conditioned: |phi(q')||phi(k')| <= e^G bounds every term of
// T_g(s) >= e^-G, so the features lose at most e^(2G) ~ 55 in relative accuracy.
constexpr double reference_bound = 2.0;

// Rounding model of the comparisons with the oracle: the probabilistic bound of Higham
// and Mary (rounding errors of an n-term sum grow like sqrt(n) u; 4 standard deviations),
// times the feature cancellation e^(2G). Worst-case n u would be ~100x looser
// (3e-2 in f32 at E = 8, g = 6) and would hide real bugs. Measured: errors <= 7e-15
// (f64) and 1.2e-6 (f32), at most 0.02 and 0.005 of the bound (0.08 and 0.04 over the
// full product of the sizes), the largest on L = 1, whose dQ and dK are pure rounding
// noise (dS = P~(dP - delta) = 0) and so are compared absolutely.
double rounding_bound(const ChainedCase& c, double unit_roundoff, double extra_terms = 0) {
  return 4 * (std::sqrt(summation_length(c)) + extra_terms) * std::exp(2 * reference_bound) * unit_roundoff;
}

// L x E x g x mask in full; (heads, batch, centring) rotate over the grid so that every
// value meets every other without the full product.
std::vector<ChainedCase> sweep() {
  std::vector<ChainedCase> out;
  int index = 0;
  for (std::int64_t len : {1, 7, 97, 130})
    for (std::int64_t dim : {1, 3, 8})
      for (int degree : {2, 4, 6})
        for (auto [causal, chunk] : {std::pair{false, std::int64_t{64}}, {true, 64}, {true, 16}}) {
          for (int pick : {index % 8, (index + 3) % 8}) {
            const std::int64_t heads = pick & 1 ? 3 : 1, batch = pick & 2 ? 2 : 1;
            out.push_back({len, dim, heads, batch, chunk, degree, causal, (pick & 4) == 0});
          }
          ++index;
        }
  return out;
}

class ChainedVsReference : public ::testing::TestWithParam<ChainedCase> {};

// f64: the same formula in a different association (features, Kronecker states, BLAS
// blocking) against the dense double oracle; the bound is at most 6e-13.
TEST_P(ChainedVsReference, F64) {
  const ChainedCase c = GetParam();
  const Inputs in = make_inputs(c, reference_bound, 11);
  const Grads want = reference(c, in);
  EXPECT_LE(max_error(c, run_chained<double>(c, in, want.o), want), rounding_bound(c, testing::unit_roundoff_f64));
}

// f32 on the same (f32-representable) inputs: the same sums in single precision, plus
// the 8-ulp exponential of the causal chunks and O~ rounded to f32; at most 3e-4.
TEST_P(ChainedVsReference, F32) {
  const ChainedCase c = GetParam();
  const Inputs in = make_inputs(c, reference_bound, 11);
  const Grads want = reference(c, in);
  EXPECT_LE(max_error(c, run_chained<float>(c, in, want.o), want), rounding_bound(c, testing::unit_roundoff_f32, 8));
}

INSTANTIATE_TEST_SUITE_P(ChainedAwkward, ChainedVsReference, ::testing::ValuesIn(sweep()),
                         [](const auto& info) { return info.param.name(); });

// As g grows, P~ -> P and the chained gradient approaches the exact one
// (ref::attention_bwd). At G = 0.5 the Taylor remainder per weight is at most
// eta(G, g) = G^(g+1) e^G / (g+1)! = 3.4e-2, 4.3e-4, 2.6e-6 for g = 2, 4, 6; the error
// must fall at least 10x per step (eta falls ~100x) and stay within eta (measured:
// at most 0.04 eta, falling 160-570x per step).
TEST(ChainedConvergence, ApproachesExactGradientAsDegreeGrows) {
  for (auto [causal, chunk] : {std::pair{false, std::int64_t{64}}, {true, 16}})
    for (std::int64_t dim : {3, 8}) {
      double previous = 1;
      for (int degree : {2, 4, 6}) {
        const ChainedCase c{130, dim, 3, 2, chunk, degree, causal, true};
        const Inputs in = make_inputs(c, 0.5, 23);
        const Grads want = reference(c, in, true);
        const double error = max_error(c, run_chained<double>(c, in, want.o), want);
        double eta = std::exp(0.5);
        for (int j = 1; j <= degree + 1; ++j) eta *= 0.5 / j;
        EXPECT_LE(error, eta) << c.name();
        EXPECT_LE(error, previous / 10) << c.name();
        previous = error;
      }
    }
}

// Causal with L <= C: every weight is the exact exp, so the chained gradient is the
// exact attention gradient up to rounding, at any degree and score size. Double
// against double with sums of at most 64 O(1) terms (64 u = 7e-15); 1e-13 for margin.
TEST(ChainedCausal, SingleChunkIsExactAttention) {
  for (std::int64_t len : {7, 64}) {
    const ChainedCase c{len, 8, 3, 2, 64, 2, true, true};
    const Inputs in = make_inputs(c, 4.0, 5);
    const Grads want = reference(c, in, true);
    EXPECT_LE(max_error(c, run_chained<double>(c, in, want.o), want), 1e-13) << c.name();
  }
}

// One sequence split across threads combines per-thread prefix / suffix states in
// thread order: every thread count must match the oracle, and a repeat with the same
// count must be bitwise identical. C = 1 makes every chunk a single row.
TEST(ChainedThreads, DeterministicAndCorrectForAnyThreadCount) {
  const ChainedCase cases[] = {{130, 3, 1, 1, 16, 4, true, true},
                               {130, 3, 3, 1, 1, 4, true, false},
                               {300, 3, 3, 1, 64, 4, false, true}};
  for (const ChainedCase& c : cases) {
    const Inputs in = make_inputs(c, reference_bound, 17);
    const Grads want = reference(c, in);
    for (int threads : {1, 2, 3, 5}) {
      set_num_threads(threads);
      const Grads got = run_chained<double>(c, in, want.o), again = run_chained<double>(c, in, want.o);
      EXPECT_LE(max_error(c, got, want), rounding_bound(c, testing::unit_roundoff_f64)) << c.name() << " " << threads;
      EXPECT_TRUE(got.d_q == again.d_q && got.d_k == again.d_k && got.d_v == again.d_v) << c.name() << " " << threads;
    }
  }
  set_num_threads(0);
}

// Causal: a sequence runs on one thread when there are at least as many sequences as
// threads, otherwise chunk by chunk on all threads with stored per-chunk states scanned
// in chunk order. Both take every sum in the same order, so the gradients must be
// bitwise identical for every thread count, in f64 and f32, at awkward sizes: L not a
// multiple of C, L < C, L = 1, C = 1, and N = 2 (serial at 1-2 threads, chunked at 3, 5).
template <class T>
void expect_same_for_every_thread_count(const ChainedCase& c) {
  const Inputs in = make_inputs(c, reference_bound, 29);
  const Grads want = reference(c, in);
  set_num_threads(1);
  const Grads one = run_chained<T>(c, in, want.o);
  EXPECT_LE(max_error(c, one, want), rounding_bound(c, std::is_same_v<T, float> ? testing::unit_roundoff_f32
                                                                                : testing::unit_roundoff_f64,
                                                    std::is_same_v<T, float> ? 8 : 0))
      << c.name();
  for (int threads : {2, 3, 5}) {
    set_num_threads(threads);
    const Grads got = run_chained<T>(c, in, want.o);
    EXPECT_TRUE(got.d_q == one.d_q && got.d_k == one.d_k && got.d_v == one.d_v) << c.name() << " " << threads;
  }
  set_num_threads(0);
}

TEST(ChainedThreads, CausalIdenticalForEveryThreadCount) {
  const ChainedCase cases[] = {{130, 3, 1, 1, 16, 4, true, true}, {1000, 8, 3, 1, 128, 4, true, true},
                               {7, 3, 1, 1, 16, 2, true, true},   {1, 3, 3, 1, 16, 4, true, false},
                               {37, 5, 1, 1, 1, 2, true, true},   {130, 3, 3, 2, 16, 6, true, false}};
  for (const ChainedCase& c : cases) {
    expect_same_for_every_thread_count<double>(c);
    expect_same_for_every_thread_count<float>(c);
  }
}

TEST(ChainedArguments, RejectsOddDegreeAndEmptyChunk) {
  const ChainedCase c{7, 3, 1, 1, 64, 4, false, true};
  const Inputs in = make_inputs(c, 1.0, 3);
  const Grads want = reference(c, in);
  auto kind_of = [&](ChainedCase bad) {
    try {
      run_chained<double>(bad, in, want.o);
    } catch (const Error& e) {
      return static_cast<int>(e.kind());
    }
    return -1;
  };
  ChainedCase odd = c;
  odd.degree = 3;
  EXPECT_EQ(kind_of(odd), static_cast<int>(ErrorKind::usage));
  ChainedCase zero_chunk = c;
  zero_chunk.causal = true;
  zero_chunk.chunk = 0;
  EXPECT_EQ(kind_of(zero_chunk), static_cast<int>(ErrorKind::usage));
}

}  // namespace
}  // namespace lorafast
