// The optimized exact path (tiled kernels, BLAS, threads) against the double reference.
#include <gtest/gtest.h>

#include <algorithm>

#include "lorafast/threads.hpp"
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
