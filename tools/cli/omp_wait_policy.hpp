#pragma once

namespace lorafast::cli {

// Re-executes the program with GOMP_SPINCOUNT=10000 when neither it nor
// OMP_WAIT_POLICY is set; returns (doing nothing) otherwise or if exec fails.
void reexec_with_short_spin(char** argv);

}  // namespace lorafast::cli
