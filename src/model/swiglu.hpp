// The SwiGLU gate of the Llama MLP, elementwise:  h = silu(gate) * up,  silu(g) = g sigmoid(g).
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

}  // namespace lorafast
