// extend_positions: the position table repeated past the trained context (gpt.hpp).
#include <algorithm>

#include "lorafast/error.hpp"
#include "lorafast/gpt.hpp"

namespace lorafast {
namespace {
constexpr std::int64_t max_positions = std::int64_t{1} << 24;  // GptConfig::validate's bound
}

template <class T>
void extend_positions(GptWeights<T>& weights, std::int64_t positions) {
  GptConfig config = weights.config;
  const std::int64_t trained = config.n_positions, d = config.n_embd;
  LF_CHECK(positions >= trained && positions <= max_positions, ErrorKind::usage, "`positions` must be in [",
           trained, " (the model's n_positions), ", max_positions, "], got ", positions);
  config.n_positions = positions;
  Tensor wpe(dtype_of<T>(), {positions, d});
  const T* src = weights.wpe.template data<T>();
  T* dst = wpe.template data<T>();
  for (std::int64_t t = 0; t < positions; ++t) std::copy_n(src + (t % trained) * d, d, dst + t * d);
  weights.wpe = std::move(wpe);
  weights.config = config;
}

template void extend_positions<float>(GptWeights<float>&, std::int64_t);
template void extend_positions<double>(GptWeights<double>&, std::int64_t);

}  // namespace lorafast
