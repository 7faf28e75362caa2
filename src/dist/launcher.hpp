// Whether a launcher started this process as one of several.
#pragma once

#include <cstdlib>
#include <string>

namespace lorafast::detail {

// The processes the launcher started: Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE,
// MPICH's Hydra and Slurm set PMI_SIZE; 0 without a launcher.
inline int launcher_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* value = std::getenv(name)) return std::atoi(value);
  return 0;
}

}  // namespace lorafast::detail
