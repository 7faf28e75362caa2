#include "precision.hpp"

#include <cstdio>
#include <mutex>

#include "lorafast/bf16.hpp"

namespace lorafast::cli {

void note_bf16_fallback(const std::string& dtype) {
  if (dtype != "bf16" || bf16_arithmetic()) return;
  static std::once_flag once;
  std::call_once(once, [] {
    std::fprintf(stderr, "lorafast: note: %s: --dtype bf16 keeps bf16 values but multiplies them in f32\n",
                 cpu_has_bf16_arithmetic() ? "bf16 arithmetic is turned off (LORAFAST_BF16_ARITHMETIC=0)"
                                           : "this CPU has no bf16 arithmetic (AVX512-BF16)");
  });
}

}  // namespace lorafast::cli
