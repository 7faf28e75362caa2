#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "lorafast/features.hpp"

namespace lorafast {
namespace {

Tensor random_rows(std::int64_t rows, std::int64_t dim, double scale, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  Tensor t(DType::f64, {rows, dim});
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = scale * normal(rng);
  return t;
}

double taylor(double t, int degree) {
  double term = 1, sum = 1;
  for (int j = 1; j <= degree; ++j) sum += (term *= t / j);
  return sum;
}

TEST(TaylorFeatures, CountIsSymmetricMonomials) {
  EXPECT_EQ(taylor_feature_count(8, 4), 495);
  EXPECT_EQ(taylor_feature_count(8, 6), 3003);
  EXPECT_EQ(taylor_feature_count(64, 2), 2145);
  EXPECT_EQ(taylor_feature_count(64, 4), 814385);
  EXPECT_EQ(TaylorFeatures(5, 4).size(), taylor_feature_count(5, 4));
  EXPECT_THROW(taylor_feature_count(64, 12, 1'000'000), Error);
}

// <phi(q), phi(k)> = T_g(q.k): the defining identity, in double to 1e-12 relative
// (a few hundred products of O(1) terms).
TEST(TaylorFeatures, InnerProductIsTaylorPolynomial) {
  for (auto [dim, degree] : {std::pair{1, 2}, {5, 4}, {8, 6}, {3, 0}}) {
    const TaylorFeatures phi(dim, degree);
    const Tensor q = random_rows(7, dim, 0.6, 1), k = random_rows(7, dim, 0.6, 2);
    Tensor fq(DType::f64, {7, phi.size()}), fk(DType::f64, {7, phi.size()});
    phi.map(matrix<double>(q), matrix<double>(fq));
    phi.map(matrix<double>(k), matrix<double>(fk));
    for (int i = 0; i < 7; ++i)
      for (int j = 0; j < 7; ++j) {
        double dot = 0, feature_dot = 0;
        for (int m = 0; m < dim; ++m) dot += q.at(i * dim + m) * k.at(j * dim + m);
        for (std::int64_t f = 0; f < phi.size(); ++f) feature_dot += fq.at(i * phi.size() + f) * fk.at(j * phi.size() + f);
        EXPECT_NEAR(feature_dot, taylor(dot, degree), 1e-12 * std::abs(taylor(dot, degree))) << dim << " " << degree;
      }
  }
}

// map_bwd against central differences of <w, phi(x)> for a random w: truncation
// O(h^2) with h = 1e-6 and rounding ~ u/h give ~1e-10 absolute on O(1) values.
TEST(TaylorFeatures, BackwardMatchesFiniteDifferences) {
  const TaylorFeatures phi(5, 4);
  const std::int64_t rows = 3, f = phi.size();
  Tensor x = random_rows(rows, 5, 0.7, 3);
  const Tensor w = random_rows(rows, f, 1.0, 4);
  Tensor features(DType::f64, {rows, f}), d_x(DType::f64, {rows, 5});
  phi.map(matrix<double>(x), matrix<double>(features));
  phi.map_bwd(matrix<double>(x), matrix<double>(features), matrix<double>(w), matrix<double>(d_x));
  auto objective = [&](const Tensor& at) {
    Tensor out(DType::f64, {rows, f});
    phi.map(matrix<double>(at), matrix<double>(out));
    double s = 0;
    for (std::int64_t i = 0; i < out.numel(); ++i) s += out.at(i) * w.at(i);
    return s;
  };
  const double h = 1e-6;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    const double saved = x.data<double>()[i];
    x.data<double>()[i] = saved + h;
    const double plus = objective(x);
    x.data<double>()[i] = saved - h;
    const double minus = objective(x);
    x.data<double>()[i] = saved;
    EXPECT_NEAR((plus - minus) / (2 * h), d_x.at(i), 1e-7) << "entry " << i;
  }
}

}  // namespace
}  // namespace lorafast
