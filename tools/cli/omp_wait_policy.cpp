// Runs the program with a short OpenMP spin before idle threads sleep, unless the user
// chose a wait policy.
//
// libgomp's default makes idle threads spin for ~300,000 iterations at every barrier.
// On a host whose cores are busy with other work the spinning thread steals the time
// slice of the one that has work: 2-thread runs measured 2-6x slower than with
// OMP_WAIT_POLICY=passive. Passive, though, costs 10-15% on a quiet machine (every
// barrier sleeps and wakes). GOMP_SPINCOUNT=10000 (a few microseconds of spinning)
// measured as fast as the default when quiet and as passive under load (README,
// "Threads"). libgomp reads these variables once, when it is loaded, before main(), so
// setting one here only takes effect in a fresh image of the program: we re-execute
// ourselves once with it set.
#include "omp_wait_policy.hpp"

#include <unistd.h>

#include <cstdlib>

namespace lorafast::cli {

void reexec_with_short_spin(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr) return;
  if (setenv("GOMP_SPINCOUNT", "10000", /*overwrite=*/0) != 0) return;
  execv("/proc/self/exe", argv);
  // Only reached if exec failed (no /proc, say): carry on under the default policy.
}

}  // namespace lorafast::cli
