#pragma once

namespace lorafast::cli {

// Re-executes the program with OMP_WAIT_POLICY=passive when neither it nor
// GOMP_SPINCOUNT is set; returns (doing nothing) otherwise or if exec fails.
void reexec_with_passive_wait_policy(char** argv);

}  // namespace lorafast::cli
