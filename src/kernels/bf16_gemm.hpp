// bf16 GEMM: C = alpha op(A) op(B) + beta C with A and B in bf16 and C in f32, every
// sum accumulated in f32 (products of two bf16 values are exact in f32), the contract
// of kernels::gemm otherwise. On a CPU with AVX512-BF16 it runs on vdpbf16ps (two
// multiply-adds per f32 lane, twice an FMA's); elsewhere, or with
// set_bf16_arithmetic(false), the operands are widened to f32 and go to BLAS: the same
// products, summed in another order. Single-threaded: callers split rows across their
// own threads, as with kernels::gemm.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/gemm.hpp"
#include "lorafast/bf16.hpp"

namespace lorafast::kernels {

void gemm_bf16(Op op_a, Op op_b, float alpha, MatrixView<const BFloat16> a, MatrixView<const BFloat16> b, float beta,
               MatrixView<float> c);
// The same with A in f32, rounded to bf16 first (as autocast rounds a linear
// layer's input; with bf16 arithmetic, subnormals flush to zero): the frozen weights
// of bf16 mixed precision times activations.
void gemm_bf16(Op op_a, Op op_b, float alpha, MatrixView<const float> a, MatrixView<const BFloat16> b, float beta,
               MatrixView<float> c);

// y[n] = alpha x op(B) + beta y for one row x (k values, f32) with B in bf16, read in
// place (bf16_gemv.cpp): the single-row products of a decoding step, bound by the
// bytes of B. Sums in f32; any CPU (no bf16 instructions needed).
void gemv_bf16(Op op_b, float alpha, const float* x, MatrixView<const BFloat16> b, float beta, float* y);

// A product on operands already in the layout of the bf16 dot-product instruction:
// words of two bf16 values, the pair (k = 2q, k = 2q + 1). A(r, q) = a[r a_row + q a_col]
// (a_col = 1: the rows of a row-major bf16 matrix with even k; a_row = 1: its
// transpose, packed so); row q of B, n words, at b + q ldb. Callers that multiply
// many tiles keep their operands in this layout (the exact attention's bf16 tiles).
struct PairTile {
  std::int64_t m = 0, n = 0, pairs = 0;
  const std::uint32_t* a = nullptr;
  std::int64_t a_row = 0, a_col = 0;
  const std::uint32_t* b = nullptr;
  std::int64_t ldb = 0;
  float* c = nullptr;
  std::int64_t ldc = 0;
};
// C[m, n] = alpha A B + beta C (beta = 0: C is not read). Only where bf16_arithmetic().
void pair_gemm(const PairTile& t, float alpha, float beta);

// Round-to-nearest-even narrowing of n contiguous values.
void to_bf16(std::span<const float> in, std::span<BFloat16> out);

}  // namespace lorafast::kernels
