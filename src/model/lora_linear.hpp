// A GPT-2 Conv1D layer with an optional LoRA adapter (PEFT layout):
//   y = x W + bias + s * (x A^T) B^T         W: [in, out], A: [R, in], B: [out, R]
// Backward, with z = x A^T and g = d_y B, both [rows, R]:
//   d_x = d_y W^T + s g A,   d_B = s d_y^T z,   d_A = s g^T x,
// and, when asked for (full-parameter training), d_W = x^T d_y, d_bias = sum_rows d_y.
// The token rows are shared out across threads (the output columns when there are
// fewer rows than threads, as in a decoding step; d_W and d_bias, sums over the rows:
// each thread owns a block of their entries, kernels/column_split.hpp); z is
// recomputed in the backward pass rather than stored (rows * R * in flops, small
// next to rows * in * out). In bf16 mixed precision W is held in bf16 (w_bf16): x W
// and d_y W^T then take x and d_y rounded to bf16 and sum in f32; the adapter's terms
// stay in f32 (kernels/weight_gemm.hpp).
#pragma once

#include <cstdint>

#include "lorafast/bf16.hpp"

namespace lorafast {

template <class T>
struct LoraLinearParams {
  std::int64_t rows = 0;  // N * T token rows
  std::int64_t in = 0;
  std::int64_t out = 0;
  std::int64_t rank = 0;  // R; 0 = no adapter
  T scale = 0;            // s
  const T* w = nullptr;       // [in, out] (or nullptr with w_bf16)
  const T* bias = nullptr;    // [out]; nullptr: no bias (nn.Linear(bias=False))
  const T* lora_a = nullptr;  // [R, in]
  const T* lora_b = nullptr;  // [out, R]
  const T* x = nullptr;       // [rows, in]
  T* y = nullptr;             // [rows, out]  fwd output
  const T* d_y = nullptr;     // [rows, out]  bwd input
  T* d_x = nullptr;           // [rows, in]   bwd output (overwritten); nullptr: not needed
  T* d_lora_a = nullptr;      // [R, in]      bwd output (overwritten) when adapted
  T* d_lora_b = nullptr;      // [out, R]
  T* d_w = nullptr;           // [in, out]    bwd output (overwritten); nullptr: not needed
  T* d_bias = nullptr;        // [out]        bwd output (overwritten); nullptr: not needed
  const BFloat16* w_bf16 = nullptr;  // W in bf16 instead of w (T = float)
};

template <class T>
void lora_linear_fwd(const LoraLinearParams<T>& p);
template <class T>
void lora_linear_bwd(const LoraLinearParams<T>& p);

}  // namespace lorafast
