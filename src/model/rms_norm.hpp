// RMS normalisation over the last axis (transformers' LlamaRMSNorm), forward and backward:
//   y = weight * x * rstd,   rstd = 1 / sqrt(mean(x^2) + eps);
// with plus_one, (1 + weight) in place of weight (transformers' Gemma3RMSNorm, whose
// weights are stored as offsets from 1).
// The row statistic goes to `rstd` in the forward pass and is read back by the backward pass.
#pragma once

#include <cstdint>

namespace lorafast {

template <class T>
struct RmsNormParams {
  std::int64_t rows = 0;
  std::int64_t dim = 0;  // D
  double eps = 1e-6;
  const T* x = nullptr;       // [rows, D]
  const T* weight = nullptr;  // [D]
  T* y = nullptr;             // [rows, D]  fwd output
  T* rstd = nullptr;          // [rows]     fwd output, bwd input
  const T* d_y = nullptr;     // [rows, D]  bwd input
  T* d_x = nullptr;           // [rows, D]  bwd: d_x += d loss / d x (accumulates: residual streams)
  T* d_weight = nullptr;      // [D]        bwd output (overwritten); nullptr: not needed
  bool plus_one = false;      // scale by 1 + weight
};

template <class T>
void rms_norm_fwd(const RmsNormParams<T>& p);
template <class T>
void rms_norm_bwd(const RmsNormParams<T>& p);

}  // namespace lorafast
