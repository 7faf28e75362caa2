// One process: the build without MPI (distributed.hpp).
#include <cstdlib>

#include "dist/launcher.hpp"
#include "lorafast/distributed.hpp"
#include "lorafast/error.hpp"

namespace lorafast {

bool built_with_mpi() { return false; }

Processes start_processes(int&, char**&) {
  const int launched = detail::launcher_size();
  LF_CHECK(launched <= 1, ErrorKind::usage, "this build has no MPI, so it cannot run as one of ", launched,
           " processes (install libopenmpi-dev and rebuild; CMake option LORAFAST_MPI)");
  return {};
}

void finish_processes() {}

void wait_for_processes(const Processes& processes) { LF_ASSERT(processes.size == 1); }

void sum_in_rank_order(std::span<double>, const Processes& processes) { LF_ASSERT(processes.size == 1); }
void sum_in_rank_order(std::span<float>, const Processes& processes) { LF_ASSERT(processes.size == 1); }

void abort_processes(int status) { std::exit(status); }

}  // namespace lorafast
