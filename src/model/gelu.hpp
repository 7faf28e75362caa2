// GELU, tanh form (GPT-2's "gelu_new"), element-wise:
//   gelu(x) = 0.5 x (1 + tanh(c (x + 0.044715 x^3))),   c = sqrt(2 / pi).
#pragma once

#include <cstdint>

#include "kernels/exp.hpp"

namespace lorafast {

// One element, with u = c (x + k x^3) and s = sigmoid(2u) = 0.5 (1 + tanh(u)):
//   gelu(x) = x s,   gelu'(x) = s + 2 x s (1 - s) c (1 + 3 k x^2).
// The sigmoid form has no cancellation in 1 + tanh(u) for x << 0, and its
// exponential is kernels::exp_approx, which vectorizes in float (libm's tanhf does
// not, and made GELU cost as much as all the GEMMs of a block); double keeps libm.
template <class T>
constexpr T gelu_c = static_cast<T>(0.79788456080286535588);  // sqrt(2 / pi)
template <class T>
constexpr T gelu_k = static_cast<T>(0.044715);

template <class T>
T gelu_sigmoid_2u(T x) {
  return kernels::sigmoid(T(2) * gelu_c<T> * (x + gelu_k<T> * x * x * x));
}
template <class T>
T gelu_slope(T x, T s) {  // s = gelu_sigmoid_2u(x)
  return s + T(2) * x * s * (T(1) - s) * gelu_c<T> * (T(1) + T(3) * gelu_k<T> * x * x);
}

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
