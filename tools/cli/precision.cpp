#include "precision.hpp"

#include <cstdio>
#include <mutex>

#include "lorafast/bf16.hpp"

namespace lorafast::cli {

void note_bf16_fallback(const std::string& dtype) {
  if (dtype != "bf16" || bf16_arithmetic()) return;
  static std::once_flag once;
  std::call_once(once, [] {
    std::fprintf(stderr,
                 "lorafast: note: this CPU has no bf16 arithmetic (AVX512-BF16): --dtype bf16 keeps bf16 values but "
                 "multiplies them in f32\n");
  });
}

}  // namespace lorafast::cli
