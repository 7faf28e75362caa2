// GEMM for the small operands of the tiled attention kernels (e.g. 128 x 256 x 64),
// same contract as kernels::gemm. OpenBLAS packs both operands into scratch on every
// call (about 15% of the exact attention's time at L = 4096, E = 64), and called
// from two OpenMP threads at once it spent another ~10% of CPU time on top.
// With AVX-512 or AVX2 + FMA, f32 products with op(B) = B are computed here instead,
// reading the operands in place: a block of C of 6 rows by block_v vectors stays in
// registers while k runs (AVX-512: 24 of 32 zmm; AVX2: 12 of 16 ymm), each step
// loading one row of B and broadcasting six entries of op(A) (a row of A, or a
// contiguous run of a column when op(A) = A^T). Everything else, and every build
// with neither, goes to BLAS.
#pragma once

#include <cstdint>

#include "kernels/gemm.hpp"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#define LORAFAST_TILE_KERNEL 1
#endif

namespace lorafast::kernels {

#ifdef LORAFAST_TILE_KERNEL
namespace tile_detail {

// The vector operations the kernel needs, for the widest instruction set compiled for.
#ifdef __AVX512F__
struct Simd {
  using Vec = __m512;
  using Mask = __mmask16;
  static constexpr int lanes = 16, block_m = 6, block_v = 4;
  static Mask first(int n) { return static_cast<Mask>((1u << n) - 1u); }
  static Vec zero() { return _mm512_setzero_ps(); }
  static Vec set1(float x) { return _mm512_set1_ps(x); }
  static Vec load(const float* p) { return _mm512_loadu_ps(p); }
  static Vec load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float* p, Vec x) { _mm512_storeu_ps(p, x); }
  static void store(float* p, Vec x, Mask m) { _mm512_mask_storeu_ps(p, m, x); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  static Vec mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
  static Vec add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
};
#else
struct Simd {
  using Vec = __m256;
  using Mask = __m256i;  // lane i active when its sign bit is set
  static constexpr int lanes = 8, block_m = 6, block_v = 2;
  static Mask first(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static Vec zero() { return _mm256_setzero_ps(); }
  static Vec set1(float x) { return _mm256_set1_ps(x); }
  static Vec load(const float* p) { return _mm256_loadu_ps(p); }
  static Vec load(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static void store(float* p, Vec x) { _mm256_storeu_ps(p, x); }
  static void store(float* p, Vec x, Mask m) { _mm256_maskstore_ps(p, m, x); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  static Vec mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
  static Vec add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
};
#endif

using Vec = Simd::Vec;
using Mask = Simd::Mask;
constexpr int lanes = Simd::lanes, block_v = Simd::block_v, block_m = Simd::block_m;

// C[0:MR, 0:lanes*NV] = alpha sum_p A(r, p) B(p, :) (+ C if accumulate), with
// A(r, p) = a[r * a_row + p * a_col]. With Tail, `tail` masks the last vector's
// columns (a masked load costs extra on AVX2, so full panels do without). The unroll
// pragmas keep acc in registers: at -O3 GCC 12 otherwise spills it every step.
template <int MR, int NV, bool Tail>
void micro(std::int64_t k, float alpha, const float* a, std::int64_t a_row, std::int64_t a_col,
           const float* b, std::int64_t ldb, bool accumulate, float* c, std::int64_t ldc, Mask tail) {
  Vec acc[MR][NV];
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = Simd::zero();
  for (std::int64_t p = 0; p < k; ++p) {
    Vec row[NV];
    #pragma GCC unroll 8
    for (int v = 0; v < NV; ++v)
      row[v] = Tail && v + 1 == NV ? Simd::load(b + p * ldb + v * lanes, tail) : Simd::load(b + p * ldb + v * lanes);
    #pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const Vec x = Simd::set1(a[r * a_row + p * a_col]);
      #pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = Simd::fmadd(x, row[v], acc[r][v]);
    }
  }
  const Vec scale = Simd::set1(alpha);
  #pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
    #pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      float* out = c + r * ldc + v * lanes;
      Vec result = Simd::mul(scale, acc[r][v]);
      if (Tail && v + 1 == NV) {
        if (accumulate) result = Simd::add(result, Simd::load(out, tail));
        Simd::store(out, result, tail);
      } else {
        if (accumulate) result = Simd::add(result, Simd::load(out));
        Simd::store(out, result);
      }
    }
}

// Calls f.template operator()<N>() for the runtime n in [1, Max].
template <int Max, class F>
void with_constant(int n, F&& f) {
  if constexpr (Max > 1)
    if (n < Max) return with_constant<Max - 1>(n, f);
  f.template operator()<Max>();
}

// One column panel (NV vectors wide) over all rows, block_m rows at a time.
template <int NV, bool Tail>
void panel(std::int64_t m, std::int64_t k, float alpha, const float* a, std::int64_t a_row, std::int64_t a_col,
           const float* b, std::int64_t ldb, bool accumulate, float* c, std::int64_t ldc, Mask tail) {
  std::int64_t i = 0;
  for (; i + block_m <= m; i += block_m)
    micro<block_m, NV, Tail>(k, alpha, a + i * a_row, a_row, a_col, b, ldb, accumulate, c + i * ldc, ldc, tail);
  if (i == m) return;
  with_constant<block_m - 1>(static_cast<int>(m - i), [&]<int MR>() {
    micro<MR, NV, Tail>(k, alpha, a + i * a_row, a_row, a_col, b, ldb, accumulate, c + i * ldc, ldc, tail);
  });
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
  const Mask all = Simd::first(lanes);
  std::int64_t j = 0;
  for (; j + width <= n; j += width)
    panel<block_v, false>(m, k, alpha, a.data, a_row, a_col, b.data + j, b.ld, accumulate, c.data + j, c.ld, all);
  if (j == n) return;
  const std::int64_t cols = n - j, vectors = (cols + lanes - 1) / lanes;
  const Mask tail = Simd::first(static_cast<int>(cols - (vectors - 1) * lanes));
  with_constant<block_v>(static_cast<int>(vectors), [&]<int NV>() {
    panel<NV, true>(m, k, alpha, a.data, a_row, a_col, b.data + j, b.ld, accumulate, c.data + j, c.ld, tail);
  });
}

#endif  // LORAFAST_TILE_KERNEL

// Without a float kernel for this CPU (f64, or a portable build) the tiles go to BLAS.
template <class T>
void tile_gemm(Op op_a, Op op_b, T alpha, std::type_identity_t<MatrixView<const T>> a,
               std::type_identity_t<MatrixView<const T>> b, T beta, MatrixView<T> c) {
  gemm(op_a, op_b, alpha, a, b, beta, c);
}

}  // namespace lorafast::kernels
