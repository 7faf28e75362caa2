// GEMMs over the N*L token rows, split across our threads (BLAS itself runs
// single-threaded). Splits are static, so results are deterministic per thread count.
#pragma once

#include <omp.h>

#include <vector>

#include "kernels/column_split.hpp"
#include "kernels/bf16_gemm.hpp"
#include "kernels/gemm.hpp"

namespace lorafast::kernels {

// Runs f(r0, rows) on every thread for its share of `rows` rows (contiguous chunks).
template <class F>
void for_row_chunks(std::int64_t rows, F f) {
#pragma omp parallel
  {
    const std::int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const std::int64_t chunk = (rows + threads - 1) / threads;
    const std::int64_t r0 = std::min(rows, t * chunk), n = std::min(rows, r0 + chunk) - r0;
    if (n > 0) f(r0, n);
  }
}

// C = alpha A op(B) + beta C, rows of A and C shared out across threads.
template <class T>
void gemm_rows(T alpha, std::type_identity_t<MatrixView<const T>> a, Op op_b,
               std::type_identity_t<MatrixView<const T>> b, T beta, MatrixView<T> c) {
  for_row_chunks(a.rows, [&](std::int64_t r0, std::int64_t rows) {
    gemm(Op::none, op_b, alpha, a.block(r0, 0, rows, a.cols), b, beta, c.block(r0, 0, rows, c.cols));
  });
}

// The same with bf16 A and B (f32 sums, bf16_gemm.hpp).
inline void gemm_bf16_rows(float alpha, MatrixView<const BFloat16> a, Op op_b, MatrixView<const BFloat16> b,
                           float beta, MatrixView<float> c) {
  for_row_chunks(a.rows, [&](std::int64_t r0, std::int64_t rows) {
    gemm_bf16(Op::none, op_b, alpha, a.block(r0, 0, rows, a.cols), b, beta, c.block(r0, 0, rows, c.cols));
  });
}

// C = alpha A^T B (a sum over the shared rows of A and B): per-thread partial
// products over row chunks, added in thread order.
template <class T>
void gemm_tn_rows(T alpha, std::type_identity_t<MatrixView<const T>> a,
                  std::type_identity_t<MatrixView<const T>> b, MatrixView<T> c) {
  const int threads = omp_get_max_threads();
  std::vector<std::vector<T>> partial(threads, std::vector<T>(c.rows * c.cols));
#pragma omp parallel num_threads(threads)
  {
    const std::int64_t t = omp_get_thread_num();
    const std::int64_t chunk = (a.rows + threads - 1) / threads;
    const std::int64_t r0 = std::min(a.rows, t * chunk), rows = std::min(a.rows, r0 + chunk) - r0;
    const MatrixView<T> out{partial[t].data(), c.rows, c.cols, c.cols};
    if (rows > 0) gemm(Op::trans, Op::none, alpha, a.block(r0, 0, rows, a.cols), b.block(r0, 0, rows, b.cols), T(0), out);
  }
  for (std::int64_t i = 0; i < c.rows; ++i)
    for (std::int64_t j = 0; j < c.cols; ++j) {
      T sum = 0;
      for (int t = 0; t < threads; ++t) sum += partial[t][i * c.cols + j];
      c(i, j) = sum;
    }
}

// C = alpha A^T B (a sum over the shared rows of A and B) with the rows of C, i.e.
// the columns of A, shared out across threads: each entry is one thread's sum over
// all rows, so nothing is reduced across threads (weight gradients x^T d_y).
template <class T>
void gemm_tn_cols(T alpha, std::type_identity_t<MatrixView<const T>> a,
                  std::type_identity_t<MatrixView<const T>> b, MatrixView<T> c) {
  for_column_blocks(c.rows, [&](std::int64_t i0, std::int64_t i1) {
    gemm(Op::trans, Op::none, alpha, a.block(0, i0, a.rows, i1 - i0), b, T(0), c.block(i0, 0, i1 - i0, c.cols));
  });
}

}  // namespace lorafast::kernels
