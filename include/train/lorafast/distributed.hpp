// The processes of an MPI job (`mpirun -np K`): data-parallel training gives each
// process a share of every micro-batch and sums their gradients. Sums run in rank
// order (each rank's vector gathered, then ranks 0..K-1 added in turn on every
// rank) rather than through MPI_Allreduce, whose algorithm, and so whose rounding,
// varies with the communicator and the message size: the sum is bit-identical on
// every rank and bit-reproducible for a given K. A build without MPI (LORAFAST_MPI
// OFF, or no MPI found) has one process.
#pragma once

#include <span>

namespace lorafast {

struct Processes {
  int rank = 0;  // of this process, 0-based
  int size = 1;  // processes in the job
  bool root() const { return rank == 0; }
};

// Whether this build has MPI.
bool built_with_mpi();

// Under a launcher (mpirun's OMPI_COMM_WORLD_SIZE, or PMI_SIZE): MPI_Init and this
// process's rank; otherwise the only process, without MPI. Error(usage) when the
// launcher starts several processes and this build has no MPI.
Processes start_processes(int& argc, char**& argv);
// MPI_Finalize when start_processes initialized MPI.
void finish_processes();

// Returns once every process has called it (MPI_Barrier).
void wait_for_processes(const Processes& processes);

// In place: every process gets the sum of `values` over ranks 0..size-1, added in
// that order. One process: unchanged, without MPI.
void sum_in_rank_order(std::span<double> values, const Processes& processes);
void sum_in_rank_order(std::span<float> values, const Processes& processes);
double sum_in_rank_order(double value, const Processes& processes);

// `gathered` holds `ranks` vectors of out.size() values one after another: out gets
// their sum, rank 0's first, then rank 1's added, and so on.
template <class T>
void add_ranks_in_order(std::span<const T> gathered, int ranks, std::span<T> out);

// Ends every process of the job (MPI_Abort) with exit status `status`; without
// MPI, this process. For a failure one rank alone may see: the others would wait
// for it forever.
[[noreturn]] void abort_processes(int status);

}  // namespace lorafast
