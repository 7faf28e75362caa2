// The sum in rank order behind sum_in_rank_order (distributed.hpp), MPI or not.
#include "lorafast/distributed.hpp"

#include "lorafast/error.hpp"

namespace lorafast {

template <class T>
void add_ranks_in_order(std::span<const T> gathered, int ranks, std::span<T> out) {
  const std::size_t n = out.size();
  LF_ASSERT(ranks >= 1 && gathered.size() == n * static_cast<std::size_t>(ranks));
  for (std::size_t i = 0; i < n; ++i) out[i] = gathered[i];
  for (int r = 1; r < ranks; ++r)
    for (std::size_t i = 0; i < n; ++i) out[i] += gathered[static_cast<std::size_t>(r) * n + i];
}

double sum_in_rank_order(double value, const Processes& processes) {
  sum_in_rank_order(std::span<double>(&value, 1), processes);
  return value;
}

template void add_ranks_in_order<float>(std::span<const float>, int, std::span<float>);
template void add_ranks_in_order<double>(std::span<const double>, int, std::span<double>);

}  // namespace lorafast
