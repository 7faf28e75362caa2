// The surrogate's inputs for one (sequence, head): centred keys and balanced scaling
// (see fast_attention.hpp), shared by the fast and chained routes.
#pragma once

#include <vector>

#include "lorafast/attention.hpp"
#include "lorafast/fast_attention.hpp"
#include "lorafast/tensor.hpp"

namespace lorafast::fast {

template <class T>
struct ScaledHead {
  std::vector<T> q, k;  // [L, E]: q' = q_factor q,  k' = k_factor (k - c)
  T q_factor = 1, k_factor = 1;
  MatrixView<const T> q_view(std::int64_t rows, std::int64_t e, std::int64_t i0 = 0) const {
    return {q.data() + i0 * e, rows, e, e};
  }
  MatrixView<const T> k_view(std::int64_t rows, std::int64_t e, std::int64_t j0 = 0) const {
    return {k.data() + j0 * e, rows, e, e};
  }
};

template <class T>
ScaledHead<T> scale_head(const AttentionParams<T>& p, std::int64_t n, std::int64_t h, const SurrogateConfig& config);

}  // namespace lorafast::fast
