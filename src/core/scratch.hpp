// Scratch memory that outlives the call that used it. Each thread keeps the blocks
// released on it (up to a cap) and hands them to the next request that fits, so
// per-call and per-step buffers stop paying for fresh pages: glibc maps every block
// above 128 KiB anew and unmaps it on free, a page fault per 4 KiB on every call (18%
// of an exact attention forward + backward at L = 1024; a training step's
// activations tripled its system time). Blocks are 64-byte aligned and uninitialised;
// one released on another thread than the one that took it joins that thread's pool.
#pragma once

#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

namespace lorafast {
namespace scratch_pool {

void* take(std::size_t bytes);  // the smallest kept block that fits, else a new one; null for 0
void give(void* block) noexcept;
std::size_t kept_bytes();       // what this thread's pool holds now

// What each thread's pool keeps at most; a larger block is freed on release (its page
// faults cost far less than the work on that much memory). 256 MiB unless a Retain
// is alive.
std::size_t retained_bytes();

// While alive, every pool may keep up to `bytes` (the training loop: one step's
// activations, reused by the next); then the previous cap again, this thread's pool
// trimmed to it.
class Retain {
 public:
  explicit Retain(std::size_t bytes);
  ~Retain();
  Retain(const Retain&) = delete;
  Retain& operator=(const Retain&) = delete;

 private:
  std::size_t previous_;
};

}  // namespace scratch_pool

// n uninitialised elements of a trivial type, from the thread's scratch pool.
template <class T>
class Scratch {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>);

 public:
  Scratch() = default;
  explicit Scratch(std::size_t n) : data_(static_cast<T*>(scratch_pool::take(n * sizeof(T)))), size_(n) {}
  ~Scratch() { scratch_pool::give(data_); }
  Scratch(Scratch&& other) noexcept : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  Scratch& operator=(Scratch other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }

  T* data() const { return data_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T& operator[](std::size_t i) const { return data_[i]; }
  T* begin() const { return data_; }
  T* end() const { return data_ + size_; }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

// A std::vector allocator from the scratch pool that leaves resized-in values
// uninitialised (the activations: every value is written before it is read, and
// zero-filling them ran on one thread while the others waited).
template <class T>
struct ScratchAllocator {
  using value_type = T;
  ScratchAllocator() = default;
  template <class U>
  ScratchAllocator(const ScratchAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(scratch_pool::take(n * sizeof(T))); }
  void deallocate(T* p, std::size_t) noexcept { scratch_pool::give(p); }
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  friend bool operator==(const ScratchAllocator&, const ScratchAllocator&) { return true; }
};

// vector(n) leaves its values uninitialised; vector(n, T(0)) zero-fills.
template <class T>
using ScratchVector = std::vector<T, ScratchAllocator<T>>;

}  // namespace lorafast
