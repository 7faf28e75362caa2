// kernels::tile_gemm (the attention tiles' GEMM) against a double triple loop, on
// shapes that exercise every row and column remainder of its register blocking
// (6 rows by 4 vectors of 16 with AVX-512, by 2 vectors of 8 with AVX2).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/tile_gemm.hpp"
#include "support/compare.hpp"

namespace lorafast {
namespace {

using kernels::Op;

// C = alpha op(A) B + beta C with C's own leading dimension wider than its columns,
// so a write past column n would show up in the padding.
void check(Op op_a, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, float beta) {
  std::mt19937 rng(static_cast<unsigned>(m * 10007 + n * 101 + k));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const std::int64_t lda = (op_a == Op::none ? k : m) + 3, ldb = n + 5, ldc = n + 7;
  const std::int64_t a_rows = op_a == Op::none ? m : k;
  std::vector<float> a(a_rows * lda + 1), b(k * ldb + 1), c(m * ldc + 1);
  for (auto* v : {&a, &b, &c})
    for (auto& x : *v) x = dist(rng);
  const std::vector<float> c0 = c;
  kernels::tile_gemm(op_a, Op::none, alpha, MatrixView<const float>{a.data(), a_rows, lda - 3, lda},
                     MatrixView<const float>{b.data(), k, n, ldb}, beta, MatrixView<float>{c.data(), m, n, ldc});
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double sum = 0, magnitude = 0;
      for (std::int64_t p = 0; p < k; ++p) {
        const double term = double(op_a == Op::none ? a[i * lda + p] : a[p * lda + i]) * b[p * ldb + j];
        sum += term;
        magnitude += std::abs(term);
      }
      const double expected = alpha * sum + beta * c0[i * ldc + j];
      // A length-k float dot product is off by at most k u times the sum of |terms|;
      // scaling by alpha and adding beta C round twice more.
      const double bound = (k + 2) * testing::unit_roundoff_f32 *
                           (std::abs(alpha) * magnitude + std::abs(beta * c0[i * ldc + j]));
      ASSERT_NEAR(c[i * ldc + j], expected, bound) << "m=" << m << " n=" << n << " k=" << k << " at " << i << "," << j;
    }
    for (std::int64_t j = n; j < ldc && i * ldc + j < static_cast<std::int64_t>(c.size()); ++j)
      ASSERT_EQ(c[i * ldc + j], c0[i * ldc + j]) << "wrote past the last column";
  }
}

TEST(TileGemm, MatchesTripleLoopOnAllRemainders) {
  for (Op op_a : {Op::none, Op::trans})
    for (std::int64_t m : {1, 5, 6, 7, 9, 10, 13, 128})
      for (std::int64_t n : {1, 7, 8, 9, 15, 16, 17, 24, 33, 48, 64, 65, 100, 256})
        for (std::int64_t k : {0, 1, 3, 64}) {
          check(op_a, m, n, k, 0.125f, 0.0f);
          check(op_a, m, n, k, 1.0f, 1.0f);
        }
}

TEST(TileGemm, OtherBetaGoesThroughBlas) { check(Op::trans, 7, 33, 9, 0.5f, 0.25f); }

}  // namespace
}  // namespace lorafast
