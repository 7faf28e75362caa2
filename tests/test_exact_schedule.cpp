// The back-and-forth order the exact kernels share row blocks out in.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "ops/exact/head_views.hpp"

namespace lorafast {
namespace {

TEST(BackAndForth, RunsEveryItemOnce) {
  for (std::int64_t threads = 1; threads <= 5; ++threads)
    for (std::int64_t n = 0; n <= 23; ++n) {
      std::vector<std::int64_t> order(n);
      for (std::int64_t i = 0; i < n; ++i) order[i] = exact::back_and_forth(i, threads, n);
      std::sort(order.begin(), order.end());
      std::vector<std::int64_t> all(n);
      std::iota(all.begin(), all.end(), 0);
      EXPECT_EQ(order, all) << "threads=" << threads << " n=" << n;
    }
}

// Items cost 1, 2, ..., n (causal row blocks): over whole pairs of rounds every
// thread gets the same total.
TEST(BackAndForth, BalancesGrowingCosts) {
  const std::int64_t threads = 2, n = 32;
  std::vector<std::int64_t> total(threads);
  for (std::int64_t i = 0; i < n; ++i) total[i % threads] += exact::back_and_forth(i, threads, n) + 1;
  EXPECT_EQ(total[0], total[1]);
}

}  // namespace
}  // namespace lorafast
