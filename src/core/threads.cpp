#include "lorafast/threads.hpp"

#include <cblas.h>
#include <omp.h>

#include <mutex>

// OpenBLAS's pthreads build starts its worker threads when it is loaded, and they spin
// in sched_yield for ~0.1 s before they sleep: on a 2-core machine that takes a core
// from the OpenMP threads for the first 0.1 s of every run (measured: 0.14 s against
// 0.18 s for a causal L = 32768 chained gradient on 2 threads). lorafast calls BLAS
// single-threaded only, so it stops them. Weak: other BLAS builds do not have it.
extern "C" int blas_thread_shutdown_(void) __attribute__((weak));

namespace lorafast {

void set_num_threads(int threads) {
  // Once per process: each call restarted and stopped OpenBLAS's threads (40 us, paid
  // three times per Python attention call).
  static std::once_flag blas_single;
  std::call_once(blas_single, [] {
    openblas_set_num_threads(1);
    if (blas_thread_shutdown_ != nullptr) blas_thread_shutdown_();
  });
  omp_set_num_threads(threads > 0 ? threads : omp_get_num_procs());
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace lorafast
