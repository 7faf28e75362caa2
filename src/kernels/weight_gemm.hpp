// Products with a frozen weight matrix of the base model, which is held in the
// compute type T or, in bf16 mixed precision (T = float), in bf16: then the other
// operand is rounded to bf16 and the sums run in f32 (gemm_bf16), as under
// torch.autocast. One entry point, so the layers that multiply by weights (the LoRA
// linear layer, the LM head) do not care which.
#pragma once

#include <type_traits>

#include "kernels/bf16_gemm.hpp"
#include "kernels/gemm.hpp"
#include "kernels/parallel_gemm.hpp"

namespace lorafast::kernels {

template <class T>
struct WeightView {
  MatrixView<const T> values{};         // the weight in T, unless it is held in bf16
  MatrixView<const BFloat16> bf16{};    // the weight in bf16 (T = float only)

  bool is_bf16() const { return bf16.data != nullptr; }
  WeightView block(std::int64_t r0, std::int64_t c0, std::int64_t nr, std::int64_t nc) const {
    return is_bf16() ? WeightView{{}, bf16.block(r0, c0, nr, nc)} : WeightView{values.block(r0, c0, nr, nc), {}};
  }
};

// A [rows, cols] weight at `values` (T) or at `bf16`, exactly one of them not null.
template <class T>
WeightView<T> weight_view(const T* values, const BFloat16* bf16, std::int64_t rows, std::int64_t cols) {
  if (bf16 != nullptr) return {{}, {bf16, rows, cols, cols}};
  return {{values, rows, cols, cols}, {}};
}

// C = alpha op_a(A) op_b(W) + beta C, single-threaded as kernels::gemm.
template <class T>
void gemm(Op op_a, Op op_b, T alpha, std::type_identity_t<MatrixView<const T>> a, const WeightView<T>& w, T beta,
          MatrixView<T> c) {
  if (!w.is_bf16()) return gemm(op_a, op_b, alpha, a, w.values, beta, c);
  if constexpr (std::is_same_v<T, float>)
    gemm_bf16(op_a, op_b, alpha, a, w.bf16, beta, c);
  else
    LF_ASSERT(false);  // bf16 weights come with f32 compute only (validated where they are made)
}

// The same with the rows of A and C shared out across threads (gemm_rows).
template <class T>
void gemm_rows(T alpha, std::type_identity_t<MatrixView<const T>> a, Op op_w, const WeightView<T>& w, T beta,
               MatrixView<T> c) {
  for_row_chunks(a.rows, [&](std::int64_t r0, std::int64_t rows) {
    gemm(Op::none, op_w, alpha, a.block(r0, 0, rows, a.cols), w, beta, c.block(r0, 0, rows, c.cols));
  });
}

}  // namespace lorafast::kernels
