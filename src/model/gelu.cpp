#include "model/gelu.hpp"

#include <cmath>

namespace lorafast {
namespace {

template <class T>
constexpr T gelu_c = static_cast<T>(0.79788456080286535588);  // sqrt(2 / pi)
template <class T>
constexpr T gelu_k = static_cast<T>(0.044715);

}  // namespace

template <class T>
void gelu_fwd(const GeluParams<T>& p) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < p.count; ++i) {
    const T x = p.x[i];
    p.y[i] = T(0.5) * x * (T(1) + std::tanh(gelu_c<T> * (x + gelu_k<T> * x * x * x)));
  }
}

// gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 k x^2),   t = tanh(c (x + k x^3)).
template <class T>
void gelu_bwd(const GeluParams<T>& p) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < p.count; ++i) {
    const T x = p.x[i];
    const T t = std::tanh(gelu_c<T> * (x + gelu_k<T> * x * x * x));
    const T slope = T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * gelu_c<T> * (T(1) + T(3) * gelu_k<T> * x * x);
    p.d_x[i] = p.d_y[i] * slope;
  }
}

template void gelu_fwd<float>(const GeluParams<float>&);
template void gelu_fwd<double>(const GeluParams<double>&);
template void gelu_bwd<float>(const GeluParams<float>&);
template void gelu_bwd<double>(const GeluParams<double>&);

}  // namespace lorafast
