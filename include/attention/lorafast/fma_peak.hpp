// The machine's f32 multiply-add ceiling, measured: the rate no f32 kernel can exceed
// on these threads. Benchmarks report achieved GFLOP/s against it (DESIGN.md item 8)
// next to the same-run sgemm, which is a kernel, not a bound.
#pragma once

namespace lorafast {

struct FmaPeak {
  double gflops = 0;    // best rate over the runs, all threads of num_threads()
  int vector_bits = 0;  // width of the multiply-adds timed (512, 256, or 0: auto-vectorized)
};

// Independent chains of fused multiply-adds on every thread, in the widest vectors the
// tile GEMM uses, for about min_time seconds.
FmaPeak measure_fma_peak(double min_time);

}  // namespace lorafast
