// Runs the program under a sleeping OpenMP wait policy unless the user chose one.
//
// libgomp's default makes idle threads spin for ~300,000 iterations at every barrier.
// On a host whose cores are busy with other work the spinning thread steals the time
// slice of the one that has work, and a 2-thread run measured 3-4x slower than with
// OMP_WAIT_POLICY=passive (README, "Threads"). libgomp reads the variable once, when it
// is loaded, before main(), so setting it here only takes effect in a fresh image of
// the program: we re-execute ourselves once with it set.
#include "omp_wait_policy.hpp"

#include <unistd.h>

#include <cstdlib>

namespace lorafast::cli {

void reexec_with_passive_wait_policy(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr) return;
  if (setenv("OMP_WAIT_POLICY", "passive", /*overwrite=*/0) != 0) return;
  execv("/proc/self/exe", argv);
  // Only reached if exec failed (no /proc, say): carry on under the default policy.
}

}  // namespace lorafast::cli
