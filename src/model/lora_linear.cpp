#include "model/lora_linear.hpp"

#include <omp.h>

#include <algorithm>
#include <vector>

#include "kernels/column_split.hpp"
#include "kernels/parallel_gemm.hpp"
#include "kernels/weight_gemm.hpp"

namespace lorafast {

using kernels::for_column_blocks;
using kernels::gemm_rows;
using kernels::gemm_tn_cols;
using kernels::gemm_tn_rows;
using kernels::Op;

namespace {

template <class T>
MatrixView<T> view(T* data, std::int64_t rows, std::int64_t cols) {
  return {data, rows, cols, cols};
}

template <class T>
kernels::WeightView<T> weight(const LoraLinearParams<T>& p) {
  return kernels::weight_view(p.w, p.w_bf16, p.in, p.out);
}

// d_bias[c] = sum over rows of d_y[r, c], accumulated in double in row order.
template <class T>
void column_sums(const T* d_y, std::int64_t rows, std::int64_t cols, T* d_bias) {
  for_column_blocks(cols, [&](std::int64_t c0, std::int64_t c1) {
    std::vector<double> sum(static_cast<std::size_t>(c1 - c0), 0.0);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = c0; c < c1; ++c) sum[static_cast<std::size_t>(c - c0)] += d_y[r * cols + c];
    for (std::int64_t c = c0; c < c1; ++c) d_bias[c] = static_cast<T>(sum[static_cast<std::size_t>(c - c0)]);
  });
}

// Fewer rows than threads (a decoding step): the output columns are shared out
// across threads instead of the rows, so a single row still uses every core.
template <class T>
void few_rows_fwd(const LoraLinearParams<T>& p) {
  const auto x = view(p.x, p.rows, p.in);
  const auto w = weight(p);
  const auto y = view(p.y, p.rows, p.out);
  std::vector<T> z(static_cast<std::size_t>(p.rows * p.rank));
  const auto zv = view(z.data(), p.rows, p.rank);
  if (p.rank > 0) kernels::gemm(Op::none, Op::trans, T(1), x, view(p.lora_a, p.rank, p.in), T(0), zv);  // z = x A^T
  const auto b = view(p.lora_b, p.out, p.rank);
  for_column_blocks(p.out, [&](std::int64_t c0, std::int64_t c1) {
    const auto yc = y.block(0, c0, p.rows, c1 - c0);
    for (std::int64_t r = 0; r < p.rows; ++r) {
      if (p.bias != nullptr) std::copy(p.bias + c0, p.bias + c1, yc.row(r));
      else std::fill(yc.row(r), yc.row(r) + (c1 - c0), T(0));
    }
    kernels::gemm(Op::none, Op::none, T(1), x, w.block(0, c0, p.in, c1 - c0), T(1), yc);  // y = bias + x W
    if (p.rank > 0)
      kernels::gemm(Op::none, Op::trans, p.scale, MatrixView<const T>(zv), b.block(c0, 0, c1 - c0, p.rank), T(1), yc);
  });
}

}  // namespace

template <class T>
void lora_linear_fwd(const LoraLinearParams<T>& p) {
  if (p.rows < omp_get_max_threads()) {
    few_rows_fwd(p);
    return;
  }
  const auto y = view(p.y, p.rows, p.out);
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < p.rows; ++r) {
    if (p.bias != nullptr) std::copy(p.bias, p.bias + p.out, y.row(r));
    else std::fill(y.row(r), y.row(r) + p.out, T(0));
  }
  const auto x = view(p.x, p.rows, p.in);
  gemm_rows(T(1), x, Op::none, weight(p), T(1), y);  // y = bias + x W
  if (p.rank == 0) return;
  std::vector<T> z(static_cast<std::size_t>(p.rows * p.rank));
  const auto zv = view(z.data(), p.rows, p.rank);
  gemm_rows(T(1), x, Op::trans, view(p.lora_a, p.rank, p.in), T(0), zv);             // z = x A^T
  gemm_rows(p.scale, MatrixView<const T>(zv), Op::trans, view(p.lora_b, p.out, p.rank), T(1), y);  // y += s z B^T
}

template <class T>
void lora_linear_bwd(const LoraLinearParams<T>& p) {
  const auto d_y = view(p.d_y, p.rows, p.out);
  const auto x = view(p.x, p.rows, p.in);
  if (p.d_x != nullptr) gemm_rows(T(1), d_y, Op::trans, weight(p), T(0), view(p.d_x, p.rows, p.in));
  if (p.d_w != nullptr) gemm_tn_cols(T(1), x, d_y, view(p.d_w, p.in, p.out));  // d_W = x^T d_y
  if (p.d_bias != nullptr) column_sums(p.d_y, p.rows, p.out, p.d_bias);
  if (p.rank == 0) return;
  const auto a = view(p.lora_a, p.rank, p.in);
  std::vector<T> z(static_cast<std::size_t>(p.rows * p.rank)), g(z.size());
  const auto zv = view(z.data(), p.rows, p.rank), gv = view(g.data(), p.rows, p.rank);
  gemm_rows(T(1), x, Op::trans, a, T(0), zv);                                   // z = x A^T
  gemm_rows(T(1), d_y, Op::none, view(p.lora_b, p.out, p.rank), T(0), gv);      // g = d_y B
  if (p.d_x != nullptr) gemm_rows(p.scale, MatrixView<const T>(gv), Op::none, a, T(1), view(p.d_x, p.rows, p.in));  // d_x += s g A
  gemm_tn_rows(p.scale, d_y, MatrixView<const T>(zv), view(p.d_lora_b, p.out, p.rank));  // d_B = s d_y^T z
  gemm_tn_rows(p.scale, MatrixView<const T>(gv), x, view(p.d_lora_a, p.rank, p.in));     // d_A = s g^T x
}

template void lora_linear_fwd<float>(const LoraLinearParams<float>&);
template void lora_linear_fwd<double>(const LoraLinearParams<double>&);
template void lora_linear_bwd<float>(const LoraLinearParams<float>&);
template void lora_linear_bwd<double>(const LoraLinearParams<double>&);

}  // namespace lorafast
