// The linear layers' GEMMs of the Llama-shaped 100M model (T = 512 token rows per
// thread, hidden 768, intermediate 2048), one thread: kernels::gemm_bf16 (bf16
// inputs, f32 sums) against f32 BLAS through kernels::gemm on the same shapes, beside
// the one-thread multiply-add peaks of both precisions measured in the same run.
// Shapes: y = x W^T (forward, op(B) = W^T), dx = dy W (backward, op(B) = W).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/bf16_gemm.hpp"
#include "lorafast/fma_peak.hpp"
#include "lorafast/threads.hpp"

namespace lorafast {
namespace {

using kernels::Op;

constexpr std::int64_t rows = 512;

template <class T>
void linear(benchmark::State& state) {
  const std::int64_t in = state.range(0), out = state.range(1);
  const Op op_b = state.range(2) ? Op::trans : Op::none;  // 1: x W^T with W [out, in]
  std::vector<T> x(rows * in), w(in * out);
  std::vector<float> y(rows * out);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto* v : {&x, &w})
    for (auto& e : *v) {
      if constexpr (std::is_same_v<T, float>) e = dist(rng);
      else e = to_bf16(dist(rng));
    }
  const MatrixView<const T> a{x.data(), rows, in, in};
  const MatrixView<const T> b = op_b == Op::trans ? MatrixView<const T>{w.data(), out, in, in}
                                                  : MatrixView<const T>{w.data(), in, out, out};
  const MatrixView<float> c{y.data(), rows, out, out};
  for (auto _ : state) {
    if constexpr (std::is_same_v<T, float>)
      kernels::gemm(Op::none, op_b, 1.0f, a, b, 0.0f, c);
    else
      kernels::gemm_bf16(Op::none, op_b, 1.0f, a, b, 0.0f, c);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(op_b == Op::trans ? "x W^T" : "dy W");
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * rows * in * out, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}

// One thread's peak, in the same units (the GEMMs above run on one thread).
void peak(benchmark::State& state) {
  set_num_threads(1);
  double gflops = 0;
  for (auto _ : state) {
    const auto p = state.range(0) ? measure_bf16_peak(0.2) : std::optional<FmaPeak>(measure_fma_peak(0.2));
    gflops = p ? p->gflops : 0;
  }
  state.SetLabel(state.range(0) ? "bf16 dot-product peak (0: no AVX512-BF16)" : "f32 multiply-add peak");
  state.counters["GFLOP/s"] = benchmark::Counter(gflops * 1e9, benchmark::Counter::kDefaults, benchmark::Counter::kIs1000);
}

const std::vector<std::vector<std::int64_t>> shapes{{768, 768, 1}, {768, 2048, 1}, {2048, 768, 1},
                                                    {768, 768, 0}, {2048, 768, 0}, {768, 2048, 0}};

BENCHMARK(peak)->Name("peak")->Arg(0)->Arg(1)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(linear<BFloat16>)->Name("gemm_bf16")->Args(shapes[0])->Args(shapes[1])->Args(shapes[2])->Args(shapes[3])
    ->Args(shapes[4])->Args(shapes[5])->Unit(benchmark::kMillisecond);
BENCHMARK(linear<float>)->Name("sgemm")->Args(shapes[0])->Args(shapes[1])->Args(shapes[2])->Args(shapes[3])
    ->Args(shapes[4])->Args(shapes[5])->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace lorafast
