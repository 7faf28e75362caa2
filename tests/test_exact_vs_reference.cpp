// The optimized exact path (tiled kernels, BLAS, threads) against the double reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "lorafast/threads.hpp"
#include "support/attention_buffers.hpp"
#include "ref/reference.hpp"
#include "support/compare.hpp"
#include "support/sweep.hpp"

namespace lorafast {
namespace {

class ExactVsReference : public ::testing::TestWithParam<CaseSpec> {};

// Longest reduction in the computation: L keys per softmax row, E per score, N*L
// tokens per adapter gradient entry.
double longest_sum(const CaseSpec& s) { return static_cast<double>(std::max({s.seq_len, s.head_dim, s.batch * s.seq_len})); }

TEST_P(ExactVsReference, F64MatchesReference) {
  const CaseSpec spec = GetParam();
  const auto inputs = make_case(spec);
  const auto options = spec.options(DType::f64);
  const auto expected = ref::lora_attention_grad(inputs, options);
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    const auto got = lora_attention_grad(inputs, options);
    // Double against double: only the summation order (tiles, BLAS blocking, thread
    // partial sums) differs, a worst case of n*u per sum over the three chained sums.
    const double tolerance = 3 * longest_sum(spec) * testing::unit_roundoff_f64;
    EXPECT_LE(testing::relative_error(got, expected), tolerance) << "threads=" << threads;
    EXPECT_NEAR(got.loss, expected.loss, tolerance * std::max(1.0, std::abs(expected.loss)));
  }
  set_num_threads(0);
}

TEST_P(ExactVsReference, F32MatchesReferenceOnRoundedInputs) {
  const CaseSpec spec = GetParam();
  // Round the inputs to f32 first so the comparison measures the computation only.
  auto inputs = make_case(spec);
  for (Tensor* t : {&inputs.x, &inputs.y, &inputs.w[0], &inputs.w[1], &inputs.w[2]}) *t = t->to(DType::f32);
  for (auto& lora : inputs.lora)
    if (lora) lora = LoraAdapter{lora->a.to(DType::f32), lora->b.to(DType::f32)};
  const auto expected = ref::lora_attention_grad(inputs, spec.options(DType::f64));
  const auto got = lora_attention_grad(inputs, spec.options(DType::f32));
  // Worst-case float summation error n*u per reduction, three chained reductions, plus
  // the 8-ulp exponential (exp_kernel test) on each probability.
  const double tolerance = (3 * longest_sum(spec) + 8) * testing::unit_roundoff_f32;
  EXPECT_LE(testing::relative_error(got, expected), tolerance);
  EXPECT_NEAR(got.loss, expected.loss, tolerance * std::max(1.0, std::abs(expected.loss)));
}

INSTANTIATE_TEST_SUITE_P(AwkwardSizes, ExactVsReference, ::testing::ValuesIn(testing::awkward_sweep()),
                         [](const auto& info) { return testing::test_name(info.param); });

// One key: P = 1, so dS = dP - delta = dO.v - dO.O vanishes with O = v, and so do dQ
// and dK. Only rounding remains: two length-E dot products of the same vectors differ
// by at most 2 E u |dO||v|, O differs from v by the exponential's 8 ulp, and the scale
// and the product with k or q add a rounding each: (2E + 10) u beta |dO||v||k|.
template <class T>
void expect_score_gradients_vanish() {
  const std::int64_t e = 13, heads = 2;
  const testing::AttentionBuffers buffers(3, 1, heads, e, 1.0, 11);
  for (bool causal : {false, true}) {
    auto b = buffers.typed<T>(0.4, causal);
    attention_fwd(b.params);
    attention_bwd(b.params);
    const double u = std::numeric_limits<T>::epsilon() / 2, bound_factor = (2 * e + 10) * u * b.params.scale;
    auto norm = [&](const Tensor& t, std::int64_t row, std::int64_t h) {
      double sum = 0;
      for (std::int64_t m = 0; m < e; ++m) sum += std::pow(t.at((row * heads + h) * e + m), 2);
      return std::sqrt(sum);
    };
    for (std::int64_t row = 0; row < 3; ++row)
      for (std::int64_t h = 0; h < heads; ++h) {
        const double terms = norm(b.d_o, row, h) * norm(b.v, row, h);
        EXPECT_LE(norm(b.d_q, row, h), bound_factor * terms * norm(b.k, row, h)) << "row " << row << " head " << h;
        EXPECT_LE(norm(b.d_k, row, h), bound_factor * terms * norm(b.q, row, h)) << "row " << row << " head " << h;
        EXPECT_GT(norm(b.d_v, row, h), 0.0);  // dV = dO: the test is not vacuous
      }
  }
}

TEST(SingleKey, ScoreGradientsVanishF64) { expect_score_gradients_vanish<double>(); }
TEST(SingleKey, ScoreGradientsVanishF32) { expect_score_gradients_vanish<float>(); }

// The reference itself is not trusted blindly: a two-token causal case by hand.
// Row 0 sees only key 0, so O_0 = V_0 exactly.
TEST(Reference, CausalFirstRowCopiesFirstValue) {
  CaseSpec spec = CaseSpec::parse("grad/causal/L2/E3/H1/qv");
  const auto in = make_case(spec);
  Tensor q({DType::f64}, {2, 3}), k(DType::f64, {2, 3}), v(DType::f64, {2, 3}), o(DType::f64, {2, 3});
  for (int i = 0; i < 6; ++i) {
    q.data<double>()[i] = in.x.at(i);
    k.data<double>()[i] = in.y.at(i);
    v.data<double>()[i] = in.w[0].at(i);
  }
  ref::attention_fwd({matrix<double>(q), matrix<double>(k), matrix<double>(v), 1, 0.5, true}, matrix<double>(o));
  for (int c = 0; c < 3; ++c) EXPECT_DOUBLE_EQ(o.at(c), v.at(c));
}

}  // namespace
}  // namespace lorafast
