// core/scratch.hpp: released blocks are reused by the next request that fits, within
// the per-thread cap; blocks are line-aligned and survive moves and other threads.
#include <gtest/gtest.h>

#include <cstdint>
#include <thread>
#include <utility>
#include <vector>

#include "core/scratch.hpp"

namespace lorafast {
namespace {

TEST(Scratch, ReusesAReleasedBlockThatFits) {
  const float* first = nullptr;
  {
    const Scratch<float> a(100000);
    first = a.data();
    a[99999] = 1.0f;
  }
  const Scratch<float> smaller(50000);
  EXPECT_EQ(smaller.data(), first);
  const Scratch<float> larger(200000);  // the kept block is too small: a new one
  EXPECT_NE(larger.data(), first);
  EXPECT_EQ(larger.size(), 200000u);
}

TEST(Scratch, PicksTheSmallestBlockThatFits) {
  const double* small_block = nullptr;
  {
    const Scratch<double> big(1 << 20), small(1000);
    small_block = small.data();
  }
  const Scratch<double> request(500);
  EXPECT_EQ(request.data(), small_block);
}

TEST(Scratch, LineAlignedAndEmptyWhenZero) {
  for (std::size_t n : {1, 3, 4097, 100000}) {
    const Scratch<float> s(n);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(s.data()) % 64, 0u) << n;
  }
  const Scratch<float> none(0);
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.data(), nullptr);
}

TEST(Scratch, KeepsAtMostTheCap) {
  const std::size_t before = scratch_pool::kept_bytes();
  { const Scratch<float> huge(scratch_pool::retained_bytes() / sizeof(float) + 1); }
  EXPECT_EQ(scratch_pool::kept_bytes(), before);  // above the cap: freed, not kept
  {
    const Scratch<char> half(scratch_pool::retained_bytes() / 2), more(scratch_pool::retained_bytes() / 2),
        third(scratch_pool::retained_bytes() / 2);
  }
  EXPECT_LE(scratch_pool::kept_bytes(), scratch_pool::retained_bytes());  // the oldest went
  EXPECT_GE(scratch_pool::kept_bytes(), scratch_pool::retained_bytes() / 2);
}

TEST(Scratch, RetainRaisesTheCapUntilItEnds) {
  const std::size_t normal = scratch_pool::retained_bytes(), big = normal + (std::size_t{1} << 20);
  {
    const scratch_pool::Retain retain(2 * normal);
    EXPECT_EQ(scratch_pool::retained_bytes(), 2 * normal);
    const char* first = nullptr;
    {
      const Scratch<char> step(big);  // a training step's buffer above the normal cap
      first = step.data();
    }
    EXPECT_GE(scratch_pool::kept_bytes(), big);
    const Scratch<char> next_step(big);
    EXPECT_EQ(next_step.data(), first);  // reused
  }
  EXPECT_EQ(scratch_pool::retained_bytes(), normal);
  EXPECT_LE(scratch_pool::kept_bytes(), normal);  // trimmed back
}

TEST(ScratchAllocator, VectorsReuseAndLeaveValuesUninitialised) {
  const float* first = nullptr;
  {
    std::vector<float, ScratchAllocator<float>> v(1000, 2.5f);
    first = v.data();
    EXPECT_EQ(v[999], 2.5f);
  }
  std::vector<float, ScratchAllocator<float>> w;
  w.resize(800);  // default-initialised: no zero fill (the values are not checked)
  EXPECT_EQ(w.data(), first);
}

TEST(Scratch, MovesOwnershipAndCrossesThreads) {
  Scratch<int> a(10);
  int* block = a.data();
  Scratch<int> b(std::move(a));
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(b.data(), block);
  b[9] = 7;
  Scratch<int> c;
  c = std::move(b);
  EXPECT_EQ(c[9], 7);
  std::thread([moved = std::move(c)]() mutable { EXPECT_EQ(moved[9], 7); }).join();  // released there
}

}  // namespace
}  // namespace lorafast
