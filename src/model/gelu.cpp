#include "model/gelu.hpp"

namespace lorafast {

template <class T>
void gelu_fwd(const GeluParams<T>& p) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < p.count; ++i) p.y[i] = p.x[i] * gelu_sigmoid_2u(p.x[i]);
}

template <class T>
void gelu_bwd(const GeluParams<T>& p) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < p.count; ++i) {
    const T x = p.x[i];
    p.d_x[i] = p.d_y[i] * gelu_slope(x, gelu_sigmoid_2u(x));
  }
}

template void gelu_fwd<float>(const GeluParams<float>&);
template void gelu_fwd<double>(const GeluParams<double>&);
template void gelu_bwd<float>(const GeluParams<float>&);
template void gelu_bwd<double>(const GeluParams<double>&);

}  // namespace lorafast
