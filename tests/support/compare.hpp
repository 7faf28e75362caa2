// Error measures used by the tests' tolerance model.
#pragma once

#include <cmath>
#include <limits>

#include "lorafast/lora.hpp"

namespace lorafast::testing {

// Unit roundoff of each precision: the base of every tolerance.
constexpr double unit_roundoff_f32 = std::numeric_limits<float>::epsilon() / 2;
constexpr double unit_roundoff_f64 = std::numeric_limits<double>::epsilon() / 2;

// ||a - b||_F / ||b||_F over all adapter gradients together (the --eps norm of
// INTERFACE.md); b is the reference. Both must adapt the same projections.
inline double relative_error(const LoraAttentionGrads& a, const LoraAttentionGrads& b) {
  double diff = 0.0, norm = 0.0;
  auto add = [&](const Tensor& x, const Tensor& y) {
    for (std::int64_t i = 0; i < y.numel(); ++i) {
      const double e = x.at(i) - y.at(i);
      diff += e * e;
      norm += y.at(i) * y.at(i);
    }
  };
  for (int i = 0; i < 3; ++i) {
    if (!b.d_lora[i]) continue;
    add(a.d_lora[i]->a, b.d_lora[i]->a);
    add(a.d_lora[i]->b, b.d_lora[i]->b);
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

}  // namespace lorafast::testing
