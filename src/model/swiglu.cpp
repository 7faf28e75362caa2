#include "model/swiglu.hpp"

#include "kernels/exp.hpp"
#include "model/gelu.hpp"

// The gate's sigmoid is kernels::sigmoid: in float it vectorizes (libm's expf, which
// does not, took 2% of a Llama fine-tuning step).
namespace lorafast {

using kernels::sigmoid;

template <class T>
void swiglu_fwd(const SwigluParams<T>& p) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < p.count; ++i) p.h[i] = p.gate[i] * sigmoid(p.gate[i]) * p.up[i];
}

template <class T>
void swiglu_bwd(const SwigluParams<T>& p) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < p.count; ++i) {
    const T g = p.gate[i], s = sigmoid(g), d_h = p.d_h[i];
    const T d_gate = d_h * p.up[i] * s * (T(1) + g * (T(1) - s));
    p.d_up[i] = d_h * g * s;  // d_up may alias d_h: read before writing
    p.d_gate[i] = d_gate;
  }
}

template <class T>
void geglu_fwd(const GegluParams<T>& p) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < p.count; ++i) p.h[i] = p.gate[i] * gelu_sigmoid_2u(p.gate[i]) * p.up[i];
}

template <class T>
void geglu_bwd(const GegluParams<T>& p) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < p.count; ++i) {
    const T g = p.gate[i], s = gelu_sigmoid_2u(g), d_h = p.d_h[i];
    const T d_gate = d_h * p.up[i] * gelu_slope(g, s);
    p.d_up[i] = d_h * g * s;  // d_up may alias d_h: read before writing
    p.d_gate[i] = d_gate;
  }
}

template void geglu_fwd<float>(const GegluParams<float>&);
template void geglu_fwd<double>(const GegluParams<double>&);
template void geglu_bwd<float>(const GegluParams<float>&);
template void geglu_bwd<double>(const GegluParams<double>&);
template void swiglu_fwd<float>(const SwigluParams<float>&);
template void swiglu_fwd<double>(const SwigluParams<double>&);
template void swiglu_bwd<float>(const SwigluParams<float>&);
template void swiglu_bwd<double>(const SwigluParams<double>&);

}  // namespace lorafast
