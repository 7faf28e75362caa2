#include "lorafast/lora.hpp"

#include <cmath>

namespace lorafast {

std::string projection_name(Projection p) {
  switch (p) {
    case Projection::q: return "q";
    case Projection::k: return "k";
    case Projection::v: return "v";
  }
  return "?";
}

double LoraScaling::factor(std::int64_t rank) const {
  const double r = static_cast<double>(rank);
  const double a = alpha.value_or(r);
  return rslora ? a / std::sqrt(r) : a / r;
}

}  // namespace lorafast
