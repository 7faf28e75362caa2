// How the exact kernels share work among threads: the back-and-forth order of row
// blocks, and results that are bitwise reproducible for a given thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "lorafast/threads.hpp"
#include "ops/exact/head_views.hpp"
#include "support/attention_buffers.hpp"

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

// One head (row blocks shared across threads, per-thread dK, dV summed in thread
// order) and three heads on three threads (whole heads per thread), causal and not.
TEST(ExactThreads, RepeatRunsAreBitwiseEqual) {
  for (const auto& [heads, threads] : {std::pair<std::int64_t, int>{1, 2}, {1, 3}, {3, 3}})
    for (bool causal : {false, true}) {
      const testing::AttentionBuffers buffers(1, 1000, heads, 64, 1.0, 5);
      set_num_threads(threads);
      auto first = buffers.typed<float>(0.125, causal), second = buffers.typed<float>(0.125, causal);
      for (auto* run : {&first, &second}) {
        attention_fwd(run->params);
        attention_bwd(run->params);
      }
      for (auto [a, b] : {std::pair{&first.o, &second.o}, {&first.lse, &second.lse}, {&first.d_q, &second.d_q},
                          {&first.d_k, &second.d_k}, {&first.d_v, &second.d_v}})
        EXPECT_EQ(std::memcmp(a->data<float>(), b->data<float>(), a->numel() * sizeof(float)), 0)
            << "heads=" << heads << " threads=" << threads << " causal=" << causal;
    }
  set_num_threads(0);
}

}  // namespace
}  // namespace lorafast
