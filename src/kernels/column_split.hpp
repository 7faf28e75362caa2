// Reductions over the token rows without cross-thread sums: each thread owns a
// contiguous block of output columns and adds every row into them, in row order.
// The result of an entry therefore does not depend on the thread count, and no
// per-thread partial copies of the output exist (parameter gradients of the model).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace lorafast::kernels {

// Calls fn(c0, c1) once per thread of a parallel region, for disjoint blocks
// [c0, c1) covering [0, cols) (some threads may get none).
template <class F>
void for_column_blocks(std::int64_t cols, F&& fn) {
#pragma omp parallel
  {
    const std::int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const std::int64_t chunk = (cols + threads - 1) / threads;
    const std::int64_t c0 = std::min(cols, t * chunk), c1 = std::min(cols, c0 + chunk);
    if (c1 > c0) fn(c0, c1);
  }
}

}  // namespace lorafast::kernels
