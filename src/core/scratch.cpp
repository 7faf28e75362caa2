#include "core/scratch.hpp"

#include <atomic>
#include <new>
#include <vector>

namespace lorafast::scratch_pool {
namespace {

constexpr std::align_val_t line{64};
constexpr std::size_t header = 64;  // before each block: its usable size (keeps the data line-aligned)
constexpr std::size_t page = 4096;  // sizes rounded up, so a slightly larger request still fits

std::atomic<std::size_t> cap{std::size_t{256} << 20};

std::size_t& size_of(void* block) { return *reinterpret_cast<std::size_t*>(static_cast<std::byte*>(block) - header); }

void release(void* block) noexcept { ::operator delete(static_cast<std::byte*>(block) - header, line); }

// Set once this thread's pool is destroyed; trivially destructible, so still readable
// by buffers released later in the thread's exit (thread_local and static ones).
thread_local bool pool_gone = false;

struct Pool {
  std::vector<void*> kept;  // oldest first
  std::size_t bytes = 0;
  void trim(std::size_t limit) noexcept {
    while (bytes > limit) {
      bytes -= size_of(kept.front());
      release(kept.front());
      kept.erase(kept.begin());
    }
  }
  ~Pool() {
    trim(0);
    pool_gone = true;
  }
};

Pool& pool() {
  thread_local Pool p;
  return p;
}

}  // namespace

void* take(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  if (!pool_gone) {
    Pool& p = pool();
    auto best = p.kept.end();
    for (auto it = p.kept.begin(); it != p.kept.end(); ++it)
      if (size_of(*it) >= bytes && (best == p.kept.end() || size_of(*it) < size_of(*best))) best = it;
    if (best != p.kept.end()) {
      void* block = *best;
      p.kept.erase(best);
      p.bytes -= size_of(block);
      return block;
    }
  }
  const std::size_t rounded = (bytes + page - 1) / page * page;
  void* block = static_cast<std::byte*>(::operator new(header + rounded, line)) + header;
  size_of(block) = rounded;
  return block;
}

void give(void* block) noexcept {
  if (block == nullptr) return;
  const std::size_t limit = retained_bytes();
  if (pool_gone || size_of(block) > limit) return release(block);
  Pool& p = pool();
  try {
    p.kept.push_back(block);
  } catch (...) {
    return release(block);
  }
  p.bytes += size_of(block);
  p.trim(limit);  // the oldest go first
}

std::size_t kept_bytes() { return pool_gone ? 0 : pool().bytes; }

std::size_t retained_bytes() { return cap.load(std::memory_order_relaxed); }

Retain::Retain(std::size_t bytes) : previous_(cap.exchange(bytes)) {}

Retain::~Retain() {
  cap.store(previous_);
  if (!pool_gone) pool().trim(previous_);
}

}  // namespace lorafast::scratch_pool
