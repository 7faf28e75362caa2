#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kernels/exp.hpp"
#include "support/compare.hpp"

namespace lorafast {
namespace {

// The Cephes polynomial is accurate to about 2 ulp after range reduction; allow 8 ulp
// (4 * 2 * u) to cover the reduction's rounding on large |x|.
TEST(ExpKernel, MatchesLibmAcrossTheRange) {
  double worst = 0.0;
  for (float x = -87.0f; x <= 88.0f; x += 0.001953125f) {
    const double exact = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(kernels::exp_approx(x) - exact) / exact);
  }
  EXPECT_LT(worst, 8 * 2 * testing::unit_roundoff_f32);
}

TEST(ExpKernel, MaskedAndUnderflowingInputsGiveZero) {
  EXPECT_EQ(kernels::exp_approx(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(kernels::exp_approx(-1000.0f), 0.0f);
  EXPECT_EQ(kernels::exp_approx(0.0f), 1.0f);
}

}  // namespace
}  // namespace lorafast
