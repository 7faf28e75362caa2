// fast/state_products.hpp's thin state products against plain triple loops in double,
// on sizes that leave remainders in every register block: feature counts and state
// columns off the block sizes, one row, widths of one to three SIMD registers, and
// leading dimensions wider than the columns.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ops/fast/state_products.hpp"

namespace lorafast {
namespace {

template <class T>
struct Matrix {
  std::vector<T> data;
  std::int64_t rows, cols, ld;
  Matrix(std::int64_t r, std::int64_t c, std::int64_t pad, std::mt19937& rng)
      : data(static_cast<std::size_t>(r * (c + pad))), rows(r), cols(c), ld(c + pad) {
    std::uniform_real_distribution<double> dist(-1.0, 1.0);
    for (T& x : data) x = static_cast<T>(dist(rng));
  }
  T& operator()(std::int64_t i, std::int64_t j) { return data[static_cast<std::size_t>(i * ld + j)]; }
  MatrixView<T> view() { return {data.data(), rows, cols, ld}; }
  MatrixView<const T> cview() { return {data.data(), rows, cols, ld}; }
};

// Each entry is a sum of `terms` products of values in [-1, 1].
template <class T>
void expect_near(T got, double want, std::int64_t terms) {
  EXPECT_NEAR(static_cast<double>(got), want, 4.0 * terms * std::numeric_limits<T>::epsilon());
}

template <class T>
class StateProducts : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(StateProducts, Types);

constexpr std::int64_t feature_counts[] = {1, 5, 7, 13, 50};
constexpr std::int64_t state_cols[] = {1, 5, 9, 13, 25};

TYPED_TEST(StateProducts, StateByRows) {
  using T = TypeParam;
  constexpr std::int64_t w = fast::Simd<T>::lanes;
  std::mt19937 rng(1);
  for (std::int64_t f : feature_counts)
    for (std::int64_t n : state_cols)
      for (std::int64_t width : {w, 2 * w, 3 * w, 5 * w}) {
        Matrix<T> s(f, n, 3, rng), y_t(n, width, w, rng), out(f, width, w, rng);
        fast::state_by_rows<T>(s.cview(), y_t.cview(), out.view());
        for (std::int64_t i = 0; i < f; ++i)
          for (std::int64_t r = 0; r < width; ++r) {
            double want = 0;
            for (std::int64_t c = 0; c < n; ++c) want += double(s(i, c)) * double(y_t(c, r));
            expect_near(out(i, r), want, n);
          }
        ASSERT_FALSE(this->HasFailure()) << "F " << f << ", n " << n << ", width " << width;
      }
}

TYPED_TEST(StateProducts, FeaturesByRows) {
  using T = TypeParam;
  constexpr std::int64_t w = fast::Simd<T>::lanes;
  std::mt19937 rng(2);
  for (bool accumulate : {false, true})
    for (std::int64_t f : feature_counts)
      for (std::int64_t n : state_cols)
        for (std::int64_t width : {w, 3 * w}) {
          Matrix<T> x(f, width, w, rng), y_t(n, width, w, rng), out(f, n, 2, rng);
          const Matrix<T> before = out;
          fast::features_by_rows<T>(x.cview(), y_t.cview(), out.view(), accumulate);
          for (std::int64_t i = 0; i < f; ++i)
            for (std::int64_t c = 0; c < n; ++c) {
              double want = accumulate ? double(before.data[i * before.ld + c]) : 0.0;
              for (std::int64_t r = 0; r < width; ++r) want += double(x(i, r)) * double(y_t(c, r));
              expect_near(out(i, c), want, width + 1);
            }
          ASSERT_FALSE(this->HasFailure()) << "F " << f << ", n " << n << ", width " << width;
        }
}

TYPED_TEST(StateProducts, RowsByState) {
  using T = TypeParam;
  constexpr std::int64_t w = fast::Simd<T>::lanes;
  std::mt19937 rng(3);
  for (bool accumulate : {false, true})
    for (std::int64_t f : feature_counts)
      for (std::int64_t n : state_cols)
        for (std::int64_t rows : {std::int64_t{1}, w - 1, 2 * w + 3, 4 * w + 5}) {
          const std::int64_t width = (rows + w - 1) / w * w;
          Matrix<T> x(f, width, w, rng), s(f, n, 3, rng), out(rows, n, 2, rng);
          const Matrix<T> before = out;
          fast::rows_by_state<T>(x.cview(), s.cview(), out.view(), accumulate);
          for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t c = 0; c < n; ++c) {
              double want = accumulate ? double(before.data[r * before.ld + c]) : 0.0;
              for (std::int64_t i = 0; i < f; ++i) want += double(x(i, r)) * double(s(i, c));
              expect_near(out(r, c), want, f + 1);
            }
          ASSERT_FALSE(this->HasFailure()) << "F " << f << ", n " << n << ", rows " << rows;
        }
}

}  // namespace
}  // namespace lorafast
