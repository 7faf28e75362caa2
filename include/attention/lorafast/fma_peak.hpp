// The machine's multiply-add ceilings, measured: the rates no f32 kernel, and no bf16
// kernel, can exceed on these threads. Benchmarks report achieved GFLOP/s against it (DESIGN.md item 8)
// next to the same-run sgemm, which is a kernel, not a bound.
#pragma once

#include <optional>

namespace lorafast {

struct FmaPeak {
  double gflops = 0;    // best rate over the runs, all threads of num_threads()
  int vector_bits = 0;  // width of the multiply-adds timed (512, 256, or 0: auto-vectorized)
};

// Independent chains of fused multiply-adds on every thread, in the widest vectors the
// tile GEMM uses, for about min_time seconds.
FmaPeak measure_fma_peak(double min_time);

// The bf16 ceiling: independent chains of bf16 pair dot products (vdpbf16ps, four
// flops per f32 lane: two multiplies, two adds into the f32 accumulator) on every
// thread; nothing on a CPU without them (cpu_has_bf16_arithmetic()).
std::optional<FmaPeak> measure_bf16_peak(double min_time);

}  // namespace lorafast
