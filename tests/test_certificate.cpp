// The Taylor error certificate and the score bound (SPEC.md §3.1) against brute force.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "lorafast/certificate.hpp"
#include "lorafast/error.hpp"

namespace lorafast {
namespace {

constexpr double unit_roundoff_long_double = std::numeric_limits<long double>::epsilon() / 2;

// |T_g(t) e^{-t} - 1| by Horner in long double, the obvious way.
long double naive_error(long double t, int degree) {
  long double poly = 1;
  for (int j = degree; j >= 1; --j) poly = 1 + poly * t / j;
  return std::abs(poly * std::exp(-t) - 1);
}

// Max of naive_error over a grid of [-G, G] that includes both ends.
double sampled_error(double g_bound, int degree) {
  constexpr int points = 4000;
  long double worst = 0;
  for (int i = 0; i <= points; ++i) {
    const long double t = -g_bound + 2.0L * g_bound * i / points;
    worst = std::max(worst, naive_error(t, degree));
  }
  return static_cast<double>(worst);
}

TEST(TaylorError, MatchesSamplingAndIsAnUpperBound) {
  for (double g_bound : {0.01, 0.1, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0})
    for (int degree : {0, 1, 2, 3, 4, 5, 6, 9, 10, 16, 22, 31, 32, 64}) {
      const double exact = taylor_relative_error(g_bound, degree);
      const double sampled = sampled_error(g_bound, degree);
      // The sampled value's own rounding: Horner sums terms of total size <= e^G in
      // long double (about degree ulps of it), then multiplies by e^G.
      const double sampling_noise = 4.0 * (degree + 2) * unit_roundoff_long_double * std::exp(2 * g_bound);
      SCOPED_TRACE(::testing::Message() << "G=" << g_bound << " g=" << degree);
      EXPECT_GE(exact, sampled - sampling_noise);  // an upper bound of every sample
      EXPECT_LE(exact, sampled * (1 + 1e-9) + sampling_noise);  // and attained (at an end)
    }
}

TEST(TaylorError, KnownValues) {
  EXPECT_EQ(taylor_relative_error(0.0, 2), 0.0);
  // g = 0: T_0 = 1, sup = e^G - 1 at t = -G.
  EXPECT_NEAR(taylor_relative_error(1.5, 0), std::expm1(1.5), 1e-11);
  // g = 2, G = 1: f(-1) - 1 = e/2 - 1 beats 1 - f(1) = 1 - 2.5/e.
  EXPECT_NEAR(taylor_relative_error(1.0, 2), std::exp(1.0) / 2 - 1, 1e-12);
  EXPECT_EQ(taylor_relative_error(std::numeric_limits<double>::infinity(), 4),
            std::numeric_limits<double>::infinity());
  EXPECT_EQ(taylor_relative_error(1e5, 4), std::numeric_limits<double>::infinity());  // e^G overflows
}

TEST(TaylorError, NeverAboveTheLagrangeBound) {
  for (double g_bound : {0.01, 0.3, 1.0, 4.0, 8.0, 16.0, 40.0})
    for (int degree = 0; degree <= 64; ++degree)
      // The certificate is rounded up by 1e-12 relative; the Lagrange bound is not.
      EXPECT_LE(taylor_relative_error(g_bound, degree), lagrange_error_bound(g_bound, degree) * (1 + 1e-11))
          << "G=" << g_bound << " g=" << degree;
}

TEST(TaylorError, TinyErrorsStayAccurate) {
  // G << g: the error is the first tail term e^G G^{g+1} / (g+1)! to first order,
  // far below long double's resolution of 1 (no cancellation against 1).
  const double g_bound = 0.01;
  const int degree = 10;
  const double first_term = std::exp(g_bound) * std::pow(g_bound, 11) / std::tgamma(12.0);
  EXPECT_NEAR(taylor_relative_error(g_bound, degree) / first_term, 1.0, 2 * g_bound / 12);
  EXPECT_GT(taylor_relative_error(g_bound, degree), 0.0);
}

TEST(TaylorError, OddDegreesPeakAtTheLeftEnd) {
  // g = 1, G = 1: f(t) = (1 + t) e^{-t} is 0 at t = -1 (error 1) and 2/e at t = 1.
  EXPECT_NEAR(taylor_relative_error(1.0, 1), 1.0, 2e-12);  // the result is rounded up by 1e-12
  // g = 3, G = 3: T_3(-3) = 1 - 3 + 4.5 - 4.5 = -2, so f(-3) - 1 = -2 e^3 - 1.
  EXPECT_NEAR(taylor_relative_error(3.0, 3), 2 * std::exp(3.0) + 1, 1e-9);
}

TEST(TaylorError, RejectsNegativeDegreeAndBound) {
  for (auto call : {+[] { taylor_relative_error(1.0, -1); }, +[] { taylor_relative_error(-1.0, 2); }}) {
    try {
      call();
      ADD_FAILURE() << "accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::usage);
    }
  }
}

TEST(ProbabilityError, Formula) {
  EXPECT_EQ(probability_error_bound(0.0), 0.0);
  EXPECT_DOUBLE_EQ(probability_error_bound(0.5), 2.0);
  EXPECT_DOUBLE_EQ(probability_error_bound(1e-6), 2e-6 / (1 - 1e-6));
  EXPECT_EQ(probability_error_bound(1.0), std::numeric_limits<double>::infinity());
  EXPECT_EQ(probability_error_bound(3.0), std::numeric_limits<double>::infinity());
  EXPECT_EQ(probability_error_bound(std::nan("")), std::numeric_limits<double>::infinity());
}

TEST(GradientErrorBound, ChainedIsTheProbabilityBound) {
  for (double g_bound : {0.1, 0.5, 2.0})
    for (int degree : {2, 4, 8})
      EXPECT_EQ(gradient_error_bound(g_bound, degree, GradientRoute::chained),
                probability_error_bound(taylor_relative_error(g_bound, degree)));
}

TEST(GradientErrorBound, FastPaysForTheDerivative) {
  for (double g_bound : {0.1, 0.5, 2.0})
    for (int degree : {2, 4, 8}) {
      const double eta = taylor_relative_error(g_bound, degree);
      const double derivative = (taylor_relative_error(g_bound, degree - 1) + eta) / (1 - eta);
      const double fast = gradient_error_bound(g_bound, degree, GradientRoute::fast);
      EXPECT_DOUBLE_EQ(fast, std::max(probability_error_bound(eta), derivative));
      // Small G: eta_{g-1} ~ G^g / g! dominates eta_g ~ G^{g+1} / (g+1)!.
      if (g_bound < 1) {
        EXPECT_GT(fast, 2 * gradient_error_bound(g_bound, degree, GradientRoute::chained));
      }
    }
  // Degree 0 drops the score gradient: no G makes that accurate.
  EXPECT_GE(gradient_error_bound(0.0, 0, GradientRoute::fast), 1.0);
  EXPECT_THROW(gradient_error_bound(0.5, 3, GradientRoute::fast), Error);
}

// The degree as a number that orders "unreachable" last.
int rank_of(int degree) { return degree < 0 ? 1000 : degree; }

class DegreeFor : public ::testing::TestWithParam<GradientRoute> {};

TEST_P(DegreeFor, SmallestEvenDegreeMeetingTheTarget) {
  const GradientRoute route = GetParam();
  for (double eps : {1e-1, 1e-2, 1e-3, 1e-6})
    for (double g_bound = 0; g_bound <= 30; g_bound += 0.25) {
      const int g = degree_for(g_bound, eps, route);
      if (g < 0) {
        EXPECT_GT(gradient_error_bound(g_bound, max_certified_degree, route), eps);
        continue;
      }
      EXPECT_TRUE(g >= 2 && g % 2 == 0) << g;
      EXPECT_LE(gradient_error_bound(g_bound, g, route), eps);
      if (g > 2) {
        EXPECT_GT(gradient_error_bound(g_bound, g - 2, route), eps);
      }
    }
  EXPECT_EQ(degree_for(0.0, 1e-3, route), 2);
  EXPECT_EQ(degree_for(40.0, 1e-3, route), -1);
}

TEST_P(DegreeFor, MonotoneInScoreBoundAndEps) {
  const GradientRoute route = GetParam();
  for (double eps : {1e-1, 1e-3, 1e-6}) {
    int previous = 0;
    for (double g_bound = 0; g_bound <= 40; g_bound += 0.1) {
      const int g = degree_for(g_bound, eps, route);
      EXPECT_GE(rank_of(g), previous) << "G=" << g_bound << " eps=" << eps;
      previous = rank_of(g);
    }
  }
  for (double g_bound : {0.1, 1.0, 3.0, 8.0, 15.0}) {
    int previous = 0;
    for (double eps = 0.5; eps > 1e-12; eps /= 3) {
      const int g = degree_for(g_bound, eps, route);
      EXPECT_GE(rank_of(g), previous) << "G=" << g_bound << " eps=" << eps;
      previous = rank_of(g);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Routes, DegreeFor, ::testing::Values(GradientRoute::fast, GradientRoute::chained),
                         [](const auto& info) { return info.param == GradientRoute::fast ? "fast" : "chained"; });

// G = 0.5, eps = 1e-3 (issue 4's bounded regime): the derivative costs the fast route
// a degree: eta_3(0.5) = 3.9e-3 > eps, while chained needs only 2 eta_4 = 7.9e-4.
TEST(DegreeFor, BoundedRegime) {
  EXPECT_EQ(degree_for(0.5, 1e-3, GradientRoute::fast), 6);
  EXPECT_EQ(degree_for(0.5, 1e-3, GradientRoute::chained), 4);
}

}  // namespace
}  // namespace lorafast
