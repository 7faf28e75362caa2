// The norm part of a decoder: LayerNorm with bias (layer_norm.hpp) or RMSNorm
// (rms_norm.hpp; with the (1 + weight) scale of Gemma), chosen by `kind`, over one params struct. The backward pass
// accumulates into d_x (residual streams) and overwrites d_weight and d_bias.
#pragma once

#include <cstdint>

#include "model/decoder_parts.hpp"
#include "model/layer_norm.hpp"
#include "model/rms_norm.hpp"

namespace lorafast {

template <class T>
struct NormParams {
  NormKind kind = NormKind::layer_norm;
  std::int64_t rows = 0;
  std::int64_t dim = 0;  // D
  double eps = 1e-5;
  const T* x = nullptr;       // [rows, D]
  const T* weight = nullptr;  // [D]
  const T* bias = nullptr;    // [D]  LayerNorm only
  T* y = nullptr;             // [rows, D]  fwd output
  T* mean = nullptr;          // [rows]     LayerNorm only: fwd output, bwd input
  T* rstd = nullptr;          // [rows]     fwd output, bwd input
  const T* d_y = nullptr;     // [rows, D]  bwd input
  T* d_x = nullptr;           // [rows, D]  bwd: d_x += d loss / d x
  T* d_weight = nullptr;      // [D]        bwd output; nullptr: not needed
  T* d_bias = nullptr;        // [D]        LayerNorm: bwd output with d_weight
};

template <class T>
void norm_fwd(const NormParams<T>& p) {
  if (p.kind == NormKind::layer_norm)
    layer_norm_fwd(LayerNormParams<T>{p.rows, p.dim, p.eps, p.x, p.weight, p.bias, p.y, p.mean, p.rstd, nullptr,
                                      nullptr, nullptr, nullptr});
  else
    rms_norm_fwd(RmsNormParams<T>{p.rows, p.dim, p.eps, p.x, p.weight, p.y, p.rstd, nullptr, nullptr, nullptr,
                                  p.kind == NormKind::rms_norm_plus_one});
}

template <class T>
void norm_bwd(const NormParams<T>& p) {
  if (p.kind == NormKind::layer_norm)
    layer_norm_bwd(LayerNormParams<T>{p.rows, p.dim, p.eps, p.x, p.weight, p.bias, nullptr, p.mean, p.rstd, p.d_y,
                                      p.d_x, p.d_weight, p.d_bias});
  else
    rms_norm_bwd(RmsNormParams<T>{p.rows, p.dim, p.eps, p.x, p.weight, nullptr, p.rstd, p.d_y, p.d_x, p.d_weight,
                                  p.kind == NormKind::rms_norm_plus_one});
}

}  // namespace lorafast
