// Scratch memory that outlives the call that used it. Each thread keeps the blocks
// its Scratch buffers release (up to retained_bytes) and hands them to the next
// request that fits, so per-call and per-step buffers stop paying for fresh pages:
// glibc maps every block above 128 KiB anew and unmaps it on free, a page fault per
// 4 KiB on every call (18% of an exact attention forward + backward at L = 1024).
// Blocks are 64-byte aligned and uninitialised; a Scratch may be released on another
// thread than the one that took it (the block then joins that thread's pool).
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

namespace lorafast {
namespace scratch_pool {

struct Block {
  std::byte* data = nullptr;
  std::size_t bytes = 0;
};

// Per thread: what the pool keeps for reuse. A larger block is freed on release: its
// page faults cost far less than the work on that much memory.
constexpr std::size_t retained_bytes = std::size_t{256} << 20;

Block take(std::size_t bytes);  // the smallest kept block that fits, else a new one
void give(Block block) noexcept;
std::size_t kept_bytes();  // what this thread's pool holds now

}  // namespace scratch_pool

// n uninitialised elements of a trivial type, from the thread's scratch pool.
template <class T>
class Scratch {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>);

 public:
  Scratch() = default;
  explicit Scratch(std::size_t n) : block_(scratch_pool::take(n * sizeof(T))), size_(n) {}
  ~Scratch() { scratch_pool::give(block_); }
  Scratch(Scratch&& other) noexcept
      : block_(std::exchange(other.block_, {})), size_(std::exchange(other.size_, 0)) {}
  Scratch& operator=(Scratch other) noexcept {
    std::swap(block_, other.block_);
    std::swap(size_, other.size_);
    return *this;
  }

  T* data() const { return reinterpret_cast<T*>(block_.data); }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T& operator[](std::size_t i) const { return data()[i]; }
  T* begin() const { return data(); }
  T* end() const { return data() + size_; }

 private:
  scratch_pool::Block block_;
  std::size_t size_ = 0;
};

}  // namespace lorafast
