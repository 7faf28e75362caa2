// Thread count for every parallel region of the library. BLAS always runs
// single-threaded inside our own threads, so the two never oversubscribe.
#pragma once

namespace lorafast {

void set_num_threads(int threads);  // <= 0 means all cores
int num_threads();

}  // namespace lorafast
