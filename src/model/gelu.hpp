// GELU, tanh form (GPT-2's "gelu_new"), element-wise:
//   gelu(x) = 0.5 x (1 + tanh(c (x + 0.044715 x^3))),   c = sqrt(2 / pi).
#pragma once

#include <cstdint>

namespace lorafast {

template <class T>
struct GeluParams {
  std::int64_t count = 0;
  const T* x = nullptr;    // the pre-activation
  T* y = nullptr;          // fwd output
  const T* d_y = nullptr;  // bwd input
  T* d_x = nullptr;        // bwd output (overwritten; may alias d_y)
};

template <class T>
void gelu_fwd(const GeluParams<T>& p);
template <class T>
void gelu_bwd(const GeluParams<T>& p);

}  // namespace lorafast
