#include "core/scratch.hpp"

#include <algorithm>
#include <new>
#include <vector>

namespace lorafast::scratch_pool {
namespace {

constexpr std::align_val_t line{64};
constexpr std::size_t page = 4096;  // sizes rounded up, so a slightly larger request still fits

void release(Block b) noexcept { ::operator delete(b.data, line); }

// Set once this thread's pool is destroyed; trivially destructible, so still readable
// by Scratch buffers released later in the thread's exit (thread_local, static).
thread_local bool pool_gone = false;

struct Pool {
  std::vector<Block> kept;  // oldest first
  std::size_t bytes = 0;
  ~Pool() {
    for (const Block& b : kept) release(b);
    pool_gone = true;
  }
};

Pool& pool() {
  thread_local Pool p;
  return p;
}

}  // namespace

Block take(std::size_t bytes) {
  if (bytes == 0) return {};
  if (!pool_gone) {
    Pool& p = pool();
    auto best = p.kept.end();
    for (auto it = p.kept.begin(); it != p.kept.end(); ++it)
      if (it->bytes >= bytes && (best == p.kept.end() || it->bytes < best->bytes)) best = it;
    if (best != p.kept.end()) {
      const Block b = *best;
      p.kept.erase(best);
      p.bytes -= b.bytes;
      return b;
    }
  }
  const std::size_t rounded = (bytes + page - 1) / page * page;
  return {static_cast<std::byte*>(::operator new(rounded, line)), rounded};
}

void give(Block block) noexcept {
  if (block.data == nullptr) return;
  if (pool_gone || block.bytes > retained_bytes) return release(block);
  Pool& p = pool();
  try {
    p.kept.push_back(block);
  } catch (...) {
    return release(block);
  }
  p.bytes += block.bytes;
  while (p.bytes > retained_bytes) {  // the oldest go first
    p.bytes -= p.kept.front().bytes;
    release(p.kept.front());
    p.kept.erase(p.kept.begin());
  }
}

std::size_t kept_bytes() { return pool_gone ? 0 : pool().bytes; }

}  // namespace lorafast::scratch_pool
