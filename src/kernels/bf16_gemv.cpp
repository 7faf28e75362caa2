// One row times a bf16 matrix (bf16_gemm.hpp, gemv_bf16): a decoding step reads
// every weight once, so its time is the weights' bytes over memory bandwidth. The
// matrix is read in place, 16 bf16 values widened to f32 per load (exact), and
// multiplied by the row's values with FMAs: no packed copy is written and read again,
// which would triple the traffic of a bf16 weight. Needs AVX-512F only.
#include <algorithm>

#include "kernels/bf16_gemm.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LORAFAST_GEMV_KERNEL 1
#endif

namespace lorafast::kernels {
namespace {

void finish(float alpha, float beta, float sum, float* y) { *y = alpha * sum + (beta == 0.0f ? 0.0f : beta * *y); }

// The reference loops: CPUs without AVX-512.
void gemv_portable(Op op_b, float alpha, const float* x, MatrixView<const BFloat16> b, float beta, float* y) {
  const std::int64_t k = op_b == Op::none ? b.rows : b.cols, n = op_b == Op::none ? b.cols : b.rows;
  for (std::int64_t j = 0; j < n; ++j) {
    float sum = 0;
    for (std::int64_t p = 0; p < k; ++p) sum += x[p] * to_f32(op_b == Op::none ? b(p, j) : b(j, p));
    finish(alpha, beta, sum, y + j);
  }
}

#ifdef LORAFAST_GEMV_KERNEL

#define LORAFAST_AVX512 __attribute__((target("avx512f")))

LORAFAST_AVX512 __m512 widen16(const BFloat16* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

LORAFAST_AVX512 __mmask16 tail_mask(std::int64_t left) {
  if (left <= 0) return 0;
  return left >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << left) - 1u);
}

// y = x B, B [k, n] row-major: 8 vectors of columns at a time, down all k rows.
LORAFAST_AVX512 void gemv_rows(float alpha, const float* x, MatrixView<const BFloat16> b, float beta, float* y) {
  constexpr int nv = 8;
  for (std::int64_t j = 0; j < b.cols; j += 16 * nv) {
    __mmask16 m[nv];
    __m512 acc[nv];
    for (int v = 0; v < nv; ++v) m[v] = tail_mask(b.cols - j - 16 * v), acc[v] = _mm512_setzero_ps();
    for (std::int64_t p = 0; p < b.rows; ++p) {
      const __m512 xp = _mm512_set1_ps(x[p]);
      const BFloat16* row = b.row(p) + j;
#pragma GCC unroll 8
      for (int v = 0; v < nv; ++v)
        if (m[v]) acc[v] = _mm512_fmadd_ps(xp, widen16(row + 16 * v, m[v]), acc[v]);
    }
    for (int v = 0; v < nv; ++v) {
      if (!m[v]) break;
      float* out = y + j + 16 * v;
      __m512 result = _mm512_mul_ps(_mm512_set1_ps(alpha), acc[v]);
      if (beta != 0.0f) result = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m[v], out), result);
      _mm512_mask_storeu_ps(out, m[v], result);
    }
  }
}

// y = x B^T, B [n, k] row-major: each output a dot product of x with a row of B,
// four rows at a time (each x load serves four).
LORAFAST_AVX512 void gemv_dots(float alpha, const float* x, MatrixView<const BFloat16> b, float beta, float* y) {
  constexpr int nr = 4;
  for (std::int64_t j = 0; j < b.rows; j += nr) {
    const int rows = static_cast<int>(std::min<std::int64_t>(nr, b.rows - j));
    __m512 acc[nr] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (std::int64_t p = 0; p < b.cols; p += 16) {
      const __mmask16 m = tail_mask(b.cols - p);
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + p);
      for (int r = 0; r < rows; ++r) acc[r] = _mm512_fmadd_ps(xv, widen16(b.row(j + r) + p, m), acc[r]);
    }
    for (int r = 0; r < rows; ++r) finish(alpha, beta, _mm512_reduce_add_ps(acc[r]), y + j + r);
  }
}

#endif  // LORAFAST_GEMV_KERNEL

}  // namespace

void gemv_bf16(Op op_b, float alpha, const float* x, MatrixView<const BFloat16> b, float beta, float* y) {
#ifdef LORAFAST_GEMV_KERNEL
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (avx512) return op_b == Op::none ? gemv_rows(alpha, x, b, beta, y) : gemv_dots(alpha, x, b, beta, y);
#endif
  gemv_portable(op_b, alpha, x, b, beta, y);
}

}  // namespace lorafast::kernels
