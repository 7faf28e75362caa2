// Several processes over MPI (distributed.hpp).
#include <mpi.h>

#include <climits>
#include <cstdlib>
#include <vector>

#include "dist/launcher.hpp"
#include "lorafast/distributed.hpp"
#include "lorafast/error.hpp"

namespace lorafast {
namespace {

bool mpi_started = false;

MPI_Datatype mpi_type(const float*) { return MPI_FLOAT; }
MPI_Datatype mpi_type(const double*) { return MPI_DOUBLE; }

template <class T>
void sum_any(std::span<T> values, const Processes& processes) {
  if (processes.size == 1) return;
  LF_ASSERT(mpi_started && values.size() <= static_cast<std::size_t>(INT_MAX));
  const int count = static_cast<int>(values.size());
  std::vector<T> gathered(values.size() * static_cast<std::size_t>(processes.size));
  MPI_Allgather(values.data(), count, mpi_type(values.data()), gathered.data(), count, mpi_type(values.data()),
                MPI_COMM_WORLD);
  add_ranks_in_order<T>(gathered, processes.size, values);
}

}  // namespace

bool built_with_mpi() { return true; }

Processes start_processes(int& argc, char**& argv) {
  // Without a launcher, one process: MPI_Init would start an Open MPI singleton for nothing.
  if (detail::launcher_size() == 0) return {};
  MPI_Init(&argc, &argv);
  mpi_started = true;
  Processes processes;
  MPI_Comm_rank(MPI_COMM_WORLD, &processes.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &processes.size);
  return processes;
}

void finish_processes() {
  if (mpi_started) MPI_Finalize();
  mpi_started = false;
}

void wait_for_processes(const Processes& processes) {
  if (processes.size > 1) MPI_Barrier(MPI_COMM_WORLD);
}

void sum_in_rank_order(std::span<double> values, const Processes& processes) { sum_any(values, processes); }
void sum_in_rank_order(std::span<float> values, const Processes& processes) { sum_any(values, processes); }

void abort_processes(int status) {
  if (mpi_started) MPI_Abort(MPI_COMM_WORLD, status);
  std::exit(status);
}

}  // namespace lorafast
