// With u = c (x + k x^3) and s = sigmoid(2u) = 0.5 (1 + tanh(u)):
//   gelu(x) = x s,   gelu'(x) = s + 2 x s (1 - s) c (1 + 3 k x^2).
// The sigmoid form has no cancellation in 1 + tanh(u) for x << 0, and its
// exponential is kernels::exp_approx, which vectorizes in float (libm's tanhf does
// not, and made GELU cost as much as all the GEMMs of a block); double keeps libm.
#include "model/gelu.hpp"

#include "kernels/exp.hpp"

namespace lorafast {
namespace {

template <class T>
constexpr T gelu_c = static_cast<T>(0.79788456080286535588);  // sqrt(2 / pi)
template <class T>
constexpr T gelu_k = static_cast<T>(0.044715);

template <class T>
T sigmoid_2u(T x) {
  return kernels::sigmoid(T(2) * gelu_c<T> * (x + gelu_k<T> * x * x * x));
}

}  // namespace

template <class T>
void gelu_fwd(const GeluParams<T>& p) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < p.count; ++i) p.y[i] = p.x[i] * sigmoid_2u(p.x[i]);
}

template <class T>
void gelu_bwd(const GeluParams<T>& p) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < p.count; ++i) {
    const T x = p.x[i], s = sigmoid_2u(x);
    const T slope = s + T(2) * x * s * (T(1) - s) * gelu_c<T> * (T(1) + T(3) * gelu_k<T> * x * x);
    p.d_x[i] = p.d_y[i] * slope;
  }
}

template void gelu_fwd<float>(const GeluParams<float>&);
template void gelu_fwd<double>(const GeluParams<double>&);
template void gelu_bwd<float>(const GeluParams<float>&);
template void gelu_bwd<double>(const GeluParams<double>&);

}  // namespace lorafast
