// GEMM for the small operands of the tiled attention kernels (e.g. 128 x 256 x 64),
// same contract as kernels::gemm. OpenBLAS packs both operands into scratch on every
// call (about 15% of the exact attention's time at L = 4096, E = 64), and called
// from two OpenMP threads at once it spent another ~10% of CPU time on top.
// With AVX-512, f32 products with op(B) = B are computed here instead, reading the
// operands in place: a 6 x 64 block of C stays in 24 registers while k runs, each
// step loading one row of B (four vectors) and broadcasting six entries of op(A) (a
// row of A, or a contiguous run of a column when op(A) = A^T). Everything else, and
// every build without AVX-512, goes to BLAS.
#pragma once

#include <cstdint>

#include "kernels/gemm.hpp"

#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace lorafast::kernels {

#ifdef __AVX512F__
namespace tile_detail {

constexpr int lanes = 16;  // floats per vector

// C[0:MR, 0:16*NV] = alpha sum_p A(r, p) B(p, :) (+ C if accumulate), with
// A(r, p) = a[r * a_row + p * a_col]. `tail` masks the last vector's columns. The
// unroll pragmas keep acc in registers: at -O3 GCC 12 otherwise spills it every step.
template <int MR, int NV>
void micro(std::int64_t k, float alpha, const float* a, std::int64_t a_row, std::int64_t a_col,
           const float* b, std::int64_t ldb, bool accumulate, float* c, std::int64_t ldc, __mmask16 tail) {
  __m512 acc[MR][NV];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (std::int64_t p = 0; p < k; ++p) {
    __m512 row[NV];
    #pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      row[v] = v + 1 < NV ? _mm512_loadu_ps(b + p * ldb + v * lanes)
                          : _mm512_maskz_loadu_ps(tail, b + p * ldb + v * lanes);
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 x = _mm512_set1_ps(a[r * a_row + p * a_col]);
      #pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(x, row[v], acc[r][v]);
    }
  }
  const __m512 scale = _mm512_set1_ps(alpha);
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      float* out = c + r * ldc + v * lanes;
      const __mmask16 mask = v + 1 < NV ? __mmask16(0xffff) : tail;
      __m512 result = _mm512_mul_ps(scale, acc[r][v]);
      if (accumulate) result = _mm512_add_ps(result, _mm512_maskz_loadu_ps(mask, out));
      _mm512_mask_storeu_ps(out, mask, result);
    }
}

constexpr int block_m = 6, block_v = 4;

// One column panel (up to 16 * block_v columns) over all rows, MR rows at a time.
template <int NV>
void panel(std::int64_t m, std::int64_t k, float alpha, const float* a, std::int64_t a_row, std::int64_t a_col,
           const float* b, std::int64_t ldb, bool accumulate, float* c, std::int64_t ldc, __mmask16 tail) {
  std::int64_t i = 0;
  for (; i + block_m <= m; i += block_m)
    micro<block_m, NV>(k, alpha, a + i * a_row, a_row, a_col, b, ldb, accumulate, c + i * ldc, ldc, tail);
  const auto rest = [&]<int MR>() {
    micro<MR, NV>(k, alpha, a + i * a_row, a_row, a_col, b, ldb, accumulate, c + i * ldc, ldc, tail);
  };
  switch (m - i) {
    case 1: rest.template operator()<1>(); break;
    case 2: rest.template operator()<2>(); break;
    case 3: rest.template operator()<3>(); break;
    case 4: rest.template operator()<4>(); break;
    case 5: rest.template operator()<5>(); break;
    default: break;
  }
  static_assert(block_m == 6, "the switch above covers the row remainders 1..block_m-1");
}

}  // namespace tile_detail

inline void tile_gemm(Op op_a, Op op_b, float alpha, MatrixView<const float> a, MatrixView<const float> b,
                      float beta, MatrixView<float> c) {
  using namespace tile_detail;
  if (op_b != Op::none || (beta != 0.0f && beta != 1.0f)) return gemm(op_a, op_b, alpha, a, b, beta, c);
  const auto m = c.rows, n = c.cols, k = op_a == Op::none ? a.cols : a.rows;
  LF_ASSERT((op_a == Op::none ? a.rows : a.cols) == m && b.rows == k && b.cols == n);
  // op(A)(i, p): A[i][p] at i * ld + p, or A[p][i] at p * ld + i.
  const std::int64_t a_row = op_a == Op::none ? a.ld : 1, a_col = op_a == Op::none ? 1 : a.ld;
  const bool accumulate = beta == 1.0f;
  constexpr std::int64_t width = lanes * block_v;
  std::int64_t j = 0;
  for (; j + width <= n; j += width)
    panel<block_v>(m, k, alpha, a.data, a_row, a_col, b.data + j, b.ld, accumulate, c.data + j, c.ld, 0xffff);
  if (j == n) return;
  const std::int64_t cols = n - j, vectors = (cols + lanes - 1) / lanes;
  const auto tail = static_cast<__mmask16>((1u << (cols - (vectors - 1) * lanes)) - 1u);
  const auto last = [&]<int NV>() {
    panel<NV>(m, k, alpha, a.data, a_row, a_col, b.data + j, b.ld, accumulate, c.data + j, c.ld, tail);
  };
  switch (vectors) {
    case 1: last.template operator()<1>(); break;
    case 2: last.template operator()<2>(); break;
    case 3: last.template operator()<3>(); break;
    default: last.template operator()<4>(); break;
  }
}

#endif  // __AVX512F__

// Without an AVX-512 float kernel (f64, or a portable build) the tiles go to BLAS.
template <class T>
void tile_gemm(Op op_a, Op op_b, T alpha, std::type_identity_t<MatrixView<const T>> a,
               std::type_identity_t<MatrixView<const T>> b, T beta, MatrixView<T> c) {
  gemm(op_a, op_b, alpha, a, b, beta, c);
}

}  // namespace lorafast::kernels
