#include "lorafast/error.hpp"

#include <cstdio>
#include <cstdlib>

namespace lorafast {

void assertion_failed(const char* condition, const char* file, int line) {
  std::fprintf(stderr, "lorafast: internal error: %s failed at %s:%d\n", condition, file, line);
  std::abort();
}

}  // namespace lorafast
