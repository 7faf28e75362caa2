// The SwiGLU gate of the Llama MLP (and GeGLU, Gemma's), elementwise:  h = silu(gate) * up,  silu(g) = g sigmoid(g).
// Backward, with s = sigmoid(g):  d_gate = d_h * up * s * (1 + g (1 - s)),  d_up = d_h * silu(g).
#pragma once

#include <cstdint>

namespace lorafast {

template <class T>
struct SwigluParams {
  std::int64_t count = 0;
  const T* gate = nullptr;  // [count]  gate_proj output
  const T* up = nullptr;    // [count]  up_proj output
  T* h = nullptr;           // [count]  fwd output
  const T* d_h = nullptr;   // [count]  bwd input
  T* d_gate = nullptr;      // [count]  bwd outputs (overwritten)
  T* d_up = nullptr;        // [count]
};

template <class T>
void swiglu_fwd(const SwigluParams<T>& p);
template <class T>
void swiglu_bwd(const SwigluParams<T>& p);

// GeGLU, the gate of Gemma's MLP, over the same tensors:  h = gelu(gate) * up, GELU's
// tanh form (gelu.hpp, transformers' gelu_pytorch_tanh). Backward:
// d_gate = d_h * up * gelu'(gate),  d_up = d_h * gelu(gate).
template <class T>
using GegluParams = SwigluParams<T>;
template <class T>
void geglu_fwd(const GegluParams<T>& p);
template <class T>
void geglu_bwd(const GegluParams<T>& p);

}  // namespace lorafast
