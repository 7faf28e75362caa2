// kernels::gemm_bf16 against a double triple loop over the same bf16 values, on the
// bf16 dot-product kernel and on the widened-f32 fallback (forced), on shapes that
// cross every remainder of its blocking (6 rows, 16-column vectors, 64-column panels,
// 1024-column blocks, k pairs and 256-k blocks); and the bf16 rounding itself.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/bf16_gemm.hpp"
#include "support/compare.hpp"

namespace lorafast {
namespace {

using kernels::Op;

struct Case {
  Op op_a, op_b;
  std::int64_t m, n, k;
  float alpha, beta;
};

// C = alpha op(A) op(B) + beta C with padded leading dimensions, so a write past
// column n shows up in the padding.
void check(const Case& t) {
  const auto [op_a, op_b, m, n, k, alpha, beta] = t;
  std::mt19937 rng(static_cast<unsigned>(m * 10007 + n * 101 + k));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const std::int64_t a_rows = op_a == Op::none ? m : k, a_cols = op_a == Op::none ? k : m;
  const std::int64_t b_rows = op_b == Op::none ? k : n, b_cols = op_b == Op::none ? n : k;
  const std::int64_t lda = a_cols + 3, ldb = b_cols + 5, ldc = n + 7;
  std::vector<BFloat16> a(a_rows * lda + 1), b(b_rows * ldb + 1);
  std::vector<float> c(m * ldc + 1);
  for (auto* v : {&a, &b})
    for (auto& x : *v) x = to_bf16(dist(rng));
  for (auto& x : c) x = dist(rng);
  const std::vector<float> c0 = c;
  kernels::gemm_bf16(op_a, op_b, alpha, {a.data(), a_rows, a_cols, lda}, {b.data(), b_rows, b_cols, ldb}, beta,
                     {c.data(), m, n, ldc});
  const auto op_at = [](const std::vector<BFloat16>& v, Op op, std::int64_t ld, std::int64_t i, std::int64_t p) {
    return double(to_f32(op == Op::none ? v[i * ld + p] : v[p * ld + i]));
  };
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      double sum = 0, magnitude = 0;
      for (std::int64_t p = 0; p < k; ++p) {
        const double term = op_at(a, op_a, lda, i, p) * op_at(b, op_b, ldb, p, j);
        sum += term;
        magnitude += std::abs(term);
      }
      const double expected = alpha * sum + beta * c0[i * ldc + j];
      // Products of two bf16 values are exact in f32, so the only errors are the f32
      // additions of a length-k sum (k u times the sum of |terms|), and per 256-k block
      // the scaling by alpha and the addition to C (two more roundings each).
      const double roundings = double(k) + 2.0 + 2.0 * double((k + 255) / 256);
      const double bound = roundings * testing::unit_roundoff_f32 *
                           (std::abs(alpha) * magnitude + std::abs(beta * c0[i * ldc + j]));
      ASSERT_NEAR(c[i * ldc + j], expected, bound)
          << "op_a=" << int(op_a) << " op_b=" << int(op_b) << " m=" << m << " n=" << n << " k=" << k << " at " << i
          << "," << j;
    }
    for (std::int64_t j = n; j < ldc && i * ldc + j < static_cast<std::int64_t>(c.size()); ++j)
      ASSERT_EQ(c[i * ldc + j], c0[i * ldc + j]) << "wrote past the last column";
  }
}

void check_all_remainders() {
  for (Op op_a : {Op::none, Op::trans})
    for (Op op_b : {Op::none, Op::trans}) {
      for (std::int64_t m : {1, 5, 6, 7, 13})
        for (std::int64_t n : {1, 15, 16, 17, 33, 64, 65, 130})
          for (std::int64_t k : {0, 1, 2, 3, 64}) {
            check({op_a, op_b, m, n, k, 0.125f, 0.0f});
            check({op_a, op_b, m, n, k, 1.0f, 1.0f});
            check({op_a, op_b, m, n, k, 0.5f, -2.0f});
          }
      // Across the 96-row, 1024-column and 256-k blocks, odd k in the last block.
      check({op_a, op_b, 97, 1030, 257, 1.0f, 1.0f});
      check({op_a, op_b, 200, 70, 601, 0.25f, 0.0f});
    }
}

TEST(Bf16Gemm, MatchesTripleLoopOnAllRemainders) { check_all_remainders(); }

// The path of CPUs without AVX512-BF16: the same contract.
TEST(Bf16Gemm, WidenedFallbackMatchesTripleLoop) {
  set_bf16_arithmetic(false);
  EXPECT_FALSE(bf16_arithmetic());
  check_all_remainders();
  set_bf16_arithmetic(true);
  EXPECT_EQ(bf16_arithmetic(), cpu_has_bf16_arithmetic());
}

// Round to nearest, ties to even, as torch.tensor(x).to(torch.bfloat16) rounds.
TEST(Bf16, RoundsToNearestEven) {
  const auto bits = [](float x) { return to_bf16(x).bits; };
  EXPECT_EQ(bits(1.0f), 0x3f80);
  EXPECT_EQ(bits(1.0f + 0x1p-8f), 0x3f80);          // tie, down to the even 1.0
  EXPECT_EQ(bits(1.0f + 3 * 0x1p-8f), 0x3f82);      // tie, up to the even neighbour
  EXPECT_EQ(bits(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);  // above the tie
  EXPECT_EQ(bits(-2.5f), 0xc020);
  EXPECT_EQ(bits(FLT_MAX), 0x7f80);                 // rounds past the largest bf16: inf
  EXPECT_EQ(bits(INFINITY), 0x7f80);
  EXPECT_EQ(bits(0x1p-130f), 0x0008);               // subnormals keep their top bits
  EXPECT_TRUE(std::isnan(to_f32(to_bf16(NAN))));
  EXPECT_TRUE(std::isnan(to_f32(to_bf16(std::bit_cast<float>(0x7f800001u)))));  // payload in the low bits only
  for (std::uint32_t u = 0; u < 0x10000u; ++u) {  // widening is exact and narrowing returns it
    const BFloat16 x{static_cast<std::uint16_t>(u)};
    if (!std::isnan(to_f32(x))) {
      ASSERT_EQ(to_bf16(to_f32(x)).bits, x.bits);
    }
  }
}

}  // namespace
}  // namespace lorafast
