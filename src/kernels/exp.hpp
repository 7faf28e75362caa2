// Vectorizable exponential for the softmax inner loops. libm's expf does not
// vectorize without -ffast-math (which would also break our NaN checks), and the
// exponentials of the score tiles would otherwise cost as much as the GEMMs.
#pragma once

#include <bit>
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace lorafast::kernels {

// exp(x) for float: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, and the
// Cephes degree-5 minimax polynomial (relative error ~2 ulp). Inputs below about
// -87.6 (including -inf, the causal mask) give exactly 0: the clamp makes n = -127,
// whose 2^n bit pattern is +0. Inputs above 88.3 saturate near FLT_MAX.
inline float exp_approx(float x) {
  x = std::min(std::max(x, -88.0f), 88.3f);
  // Round to nearest by the 1.5 * 2^23 trick: plain SSE2, vectorizes everywhere.
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float poly = p * r * r + r + 1.0f;
  const float scale = std::bit_cast<float>((static_cast<std::int32_t>(n) + 127) << 23);
  return poly * scale;
}

// Double precision keeps libm: f64 is the accuracy path, not the speed path.
inline double exp_approx(double x) { return std::exp(x); }

// 1 / (1 + e^{-x}) on exp_approx (GELU's and SwiGLU's gates). In float, below
// x = -88 the result is 0: exp_approx saturates there rather than overflow to inf.
inline float sigmoid(float x) { return x < -88.0f ? 0.0f : 1.0f / (1.0f + exp_approx(-x)); }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace lorafast::kernels
