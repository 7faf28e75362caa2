// std::vector whose storage starts on a 64-byte line: the SIMD rows of column-layout
// blocks (fast/state_products.hpp) then never straddle two cache lines, whatever
// malloc returns (16-byte alignment once large blocks stop being mmapped).
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace lorafast {

template <class T>
struct LineAllocator {
  using value_type = T;
  static constexpr std::align_val_t line{64};
  LineAllocator() = default;
  template <class U>
  LineAllocator(const LineAllocator<U>&) {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), line)); }
  void deallocate(T* p, std::size_t) { ::operator delete(p, line); }
  friend bool operator==(const LineAllocator&, const LineAllocator&) { return true; }
};

template <class T>
using LineVector = std::vector<T, LineAllocator<T>>;

}  // namespace lorafast
