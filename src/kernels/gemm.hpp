// Typed GEMM on matrix views through CBLAS (OpenBLAS): C = alpha op(A) op(B) + beta C.
// Shapes are taken from the views; op(A) is [M, K], op(B) is [K, N], C is [M, N].
#pragma once

#include <cblas.h>

#include <type_traits>

#include "lorafast/tensor.hpp"

namespace lorafast::kernels {

enum class Op { none, trans };

// lorafast calls BLAS only from inside its own OpenMP threads (or splits a GEMM
// across them itself, parallel_gemm.hpp): a multi-threaded BLAS there would
// oversubscribe the cores. Set before the first call, so that a library user who
// never calls set_num_threads gets the same speed as the CLI.
inline void single_threaded_blas() {
  static const bool done = (openblas_set_num_threads(1), true);
  (void)done;
}

// The summed length k of C = op(A) op(B), the three shapes checked against each other.
template <class A, class B, class C>
std::int64_t inner_length(Op op_a, const A& a, Op op_b, const B& b, const C& c) {
  const std::int64_t k = op_a == Op::none ? a.cols : a.rows;
  LF_ASSERT((op_a == Op::none ? a.rows : a.cols) == c.rows);
  LF_ASSERT((op_b == Op::none ? b.rows : b.cols) == k);
  LF_ASSERT((op_b == Op::none ? b.cols : b.rows) == c.cols);
  return k;
}

template <class T>
void gemm(Op op_a, Op op_b, T alpha, std::type_identity_t<MatrixView<const T>> a,
          std::type_identity_t<MatrixView<const T>> b, T beta, MatrixView<T> c) {
  const auto m = c.rows, n = c.cols, k = inner_length(op_a, a, op_b, b, c);
  if (m == 0 || n == 0) return;
  single_threaded_blas();
  const auto ta = op_a == Op::none ? CblasNoTrans : CblasTrans;
  const auto tb = op_b == Op::none ? CblasNoTrans : CblasTrans;
  // BLAS requires ld >= 1 even for empty inner dimensions.
  const auto lda = a.ld > 0 ? a.ld : 1, ldb = b.ld > 0 ? b.ld : 1;
  if (m == 1 && k > 0) {
    // One row (a decode step): a GEMV. OpenBLAS's GEMM packs all of B for a single
    // row, which read the weights twice and spent 60% of a GPT-2-124M decode step
    // copying them (perf). c^T = op(B)^T op(A)^T, B row-major [k, n] or [n, k].
    const auto inc_a = op_a == Op::none ? 1 : lda;
    const auto tb_v = op_b == Op::none ? CblasTrans : CblasNoTrans;
    const auto rows_b = op_b == Op::none ? k : n, cols_b = op_b == Op::none ? n : k;
    if constexpr (std::is_same_v<T, float>)
      cblas_sgemv(CblasRowMajor, tb_v, rows_b, cols_b, alpha, b.data, ldb, a.data, inc_a, beta, c.data, 1);
    else
      cblas_dgemv(CblasRowMajor, tb_v, rows_b, cols_b, alpha, b.data, ldb, a.data, inc_a, beta, c.data, 1);
    return;
  }
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a.data, lda, b.data, ldb, beta, c.data, c.ld);
  else
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a.data, lda, b.data, ldb, beta, c.data, c.ld);
}

}  // namespace lorafast::kernels
