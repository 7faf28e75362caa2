// The library owns its threading: BLAS runs single-threaded inside lorafast's OpenMP
// threads even for a user who never calls set_num_threads (the CLI does). ctest runs
// each test in a process of its own, so nothing before this one set it.
#include <cblas.h>
#include <gtest/gtest.h>

#include <vector>

#include "lorafast/lorafast.hpp"  // the umbrella header compiles on its own

namespace lorafast {
namespace {

TEST(LibraryThreads, BlasIsSingleThreadedWithoutSetNumThreads) {
  const std::int64_t l = 300, e = 64;  // large enough for the tile kernels to call BLAS
  std::vector<double> q(l * e, 0.5), k(l * e, 0.25), v(l * e, 1.0), o(l * e), lse(l);
  AttentionParams<double> p;
  p.seq_len = l;
  p.head_dim = e;
  p.scale = 0.125;
  p.q = q.data(), p.k = k.data(), p.v = v.data(), p.o = o.data(), p.lse = lse.data();
  attention_fwd(p);
  EXPECT_EQ(openblas_get_num_threads(), 1);
  EXPECT_DOUBLE_EQ(o[0], 1.0);  // every value row is ones
}

}  // namespace
}  // namespace lorafast
