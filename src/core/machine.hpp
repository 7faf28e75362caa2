// Facts about the machine that size what the library keeps in memory.
#pragma once

#include <cstddef>

namespace lorafast {

// Installed memory in bytes; 0 when the system does not say.
std::size_t physical_memory_bytes();

}  // namespace lorafast
