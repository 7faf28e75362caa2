#include "lorafast/threads.hpp"

#include <cblas.h>
#include <omp.h>

namespace lorafast {

void set_num_threads(int threads) {
  openblas_set_num_threads(1);
  omp_set_num_threads(threads > 0 ? threads : omp_get_num_procs());
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace lorafast
