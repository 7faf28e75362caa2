// The activation part of a decoder's MLP, between its input projections and its
// output projection, chosen by `kind`: GELU (tanh form, gelu.hpp) of the one input
// projection, or SwiGLU or GeGLU (swiglu.hpp) of gate and up, stored as two blocks
// [rows, F] of `pre`. Backward: d_pre (laid out as `pre`) from d_h; d_h may alias
// d_pre's last block.
#pragma once

#include <cstdint>

#include "model/decoder_parts.hpp"
#include "model/gelu.hpp"
#include "model/swiglu.hpp"

namespace lorafast {

template <class T>
struct MlpActivationParams {
  MlpKind kind = MlpKind::gelu;
  std::int64_t count = 0;  // rows * F
  const T* pre = nullptr;  // GELU: [count]; SwiGLU, GeGLU: gate [count] then up [count]
  T* h = nullptr;          // [count] fwd output
  const T* d_h = nullptr;  // [count] bwd input
  T* d_pre = nullptr;      // as pre: bwd output (overwritten)
};

template <class T>
void mlp_activation_fwd(const MlpActivationParams<T>& p) {
  if (p.kind == MlpKind::gelu) return gelu_fwd(GeluParams<T>{p.count, p.pre, p.h, nullptr, nullptr});
  const SwigluParams<T> gated{p.count, p.pre, p.pre + p.count, p.h, nullptr, nullptr, nullptr};
  p.kind == MlpKind::swiglu ? swiglu_fwd(gated) : geglu_fwd(gated);
}

template <class T>
void mlp_activation_bwd(const MlpActivationParams<T>& p) {
  if (p.kind == MlpKind::gelu) return gelu_bwd(GeluParams<T>{p.count, p.pre, nullptr, p.d_h, p.d_pre});
  const SwigluParams<T> gated{p.count, p.pre, p.pre + p.count, nullptr, p.d_h, p.d_pre, p.d_pre + p.count};
  p.kind == MlpKind::swiglu ? swiglu_bwd(gated) : geglu_bwd(gated);
}

}  // namespace lorafast
