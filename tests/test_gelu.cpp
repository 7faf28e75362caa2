// GELU (tanh form) forward and derivative against a long double evaluation of
// 0.5 x (1 + tanh(u)), u = c (x + k x^3), over x in [-9, 9] and in the far tails.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "model/gelu.hpp"

namespace lorafast {
namespace {

struct GeluRef {
  long double y, slope, slope_scale;  // slope_scale: sum of |terms| of the slope
};

// In the form 1 + tanh(u) = 2 s, 1 - tanh(u)^2 = 4 s (1 - s), s = 1 / (1 + e^{-2u}):
// 1 + tanh(u) itself cancels to 0 even in long double once x < -7 or so.
GeluRef gelu_ref(long double x) {
  const long double c = std::sqrt(2.0L / 3.14159265358979323846264338327950288L), k = 0.044715L;
  const long double s = 1 / (1 + std::exp(-2 * c * (x + k * x * x * x)));
  const long double first = s, second = 2 * x * s * (1 - s) * c * (1 + 3 * k * x * x);
  return {x * s, first + second, std::fabs(first) + std::fabs(second)};
}

// Rounding model: a few ulps for the exponential, the sum and the division, plus
// the rounding of the argument 2u (relative u_T), which the exponential turns into
// a relative error of |2u| u_T in s = sigmoid(2u) for x << 0 (any T-precision
// evaluation has it). So |got - ref| <= 16 u_T (1 + |2u|) |ref| for the value, and
// the same relative to the sum of |terms| for the slope (which crosses zero near
// x = -0.75). Measured: at most 0.15 of the bound, in float and in double.
template <class T>
void check_gelu() {
  const double u = std::numeric_limits<T>::epsilon() / 2;
  std::vector<T> x;
  for (int i = -900; i <= 900; i += 7) x.push_back(static_cast<T>(i / 100.0));
  x.push_back(T(0));
  std::vector<T> y(x.size()), ones(x.size(), T(1)), slope(x.size());
  gelu_fwd(GeluParams<T>{static_cast<std::int64_t>(x.size()), x.data(), y.data(), nullptr, nullptr});
  gelu_bwd(GeluParams<T>{static_cast<std::int64_t>(x.size()), x.data(), nullptr, ones.data(), slope.data()});
  for (std::size_t i = 0; i < x.size(); ++i) {
    const long double xi = x[i], two_u = std::fabs(2 * 0.7978845608L * (xi + 0.044715L * xi * xi * xi));
    const GeluRef ref = gelu_ref(xi);
    const double tol = 16 * u * static_cast<double>(1 + two_u);
    EXPECT_LE(std::fabs(y[i] - ref.y), tol * std::fabs(ref.y)) << "x = " << x[i];
    EXPECT_LE(std::fabs(slope[i] - ref.slope), tol * ref.slope_scale) << "x = " << x[i];
  }
}

TEST(Gelu, MatchesTheTanhFormFloat) { check_gelu<float>(); }
TEST(Gelu, MatchesTheTanhFormDouble) { check_gelu<double>(); }

// Far tails: gelu(x) -> x and slope -> 1 for x >> 0; both -> 0 (finite, no NaN)
// for x << 0, where exp(-2u) overflows or saturates.
TEST(Gelu, TailsAreFinite) {
  std::vector<float> x{-1e15f, -500.0f, -40.0f, -12.0f, 12.0f, 40.0f, 500.0f};
  std::vector<float> y(x.size()), ones(x.size(), 1.0f), slope(x.size());
  gelu_fwd(GeluParams<float>{static_cast<std::int64_t>(x.size()), x.data(), y.data(), nullptr, nullptr});
  gelu_bwd(GeluParams<float>{static_cast<std::int64_t>(x.size()), x.data(), nullptr, ones.data(), slope.data()});
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (x[i] > 0) {
      EXPECT_EQ(y[i], x[i]);
      EXPECT_EQ(slope[i], 1.0f);
    } else {
      EXPECT_LE(std::fabs(y[i]), 1e-30f) << x[i];
      EXPECT_LE(std::fabs(slope[i]), 1e-30f) << x[i];
    }
  }
}

}  // namespace
}  // namespace lorafast
