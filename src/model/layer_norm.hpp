// Layer normalisation over the last axis, forward and backward:
//   y = (x - mean) * rstd * weight + bias,   rstd = 1 / sqrt(var + eps)
// (biased variance, as torch.nn.LayerNorm). Row statistics go to `mean`, `rstd`
// in the forward pass and are read back by the backward pass.
#pragma once

#include <cstdint>

namespace lorafast {

template <class T>
struct LayerNormParams {
  std::int64_t rows = 0;
  std::int64_t dim = 0;  // D
  double eps = 1e-5;
  const T* x = nullptr;       // [rows, D]
  const T* weight = nullptr;  // [D]
  const T* bias = nullptr;    // [D]
  T* y = nullptr;             // [rows, D]  fwd output
  T* mean = nullptr;          // [rows]     fwd output, bwd input
  T* rstd = nullptr;          // [rows]     fwd output, bwd input
  const T* d_y = nullptr;     // [rows, D]  bwd input
  T* d_x = nullptr;           // [rows, D]  bwd: d_x += d loss / d x (accumulates: residual streams)
  T* d_weight = nullptr;      // [D]        bwd output (overwritten); nullptr: not needed
  T* d_bias = nullptr;        // [D]        bwd output (overwritten); both or neither
};

template <class T>
void layer_norm_fwd(const LayerNormParams<T>& p);
template <class T>
void layer_norm_bwd(const LayerNormParams<T>& p);

}  // namespace lorafast
