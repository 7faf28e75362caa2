// The attention tiles' GEMM shapes (query block 128, key tile 256, E = 64), one
// thread: kernels::tile_gemm against BLAS through kernels::gemm. Shows why the exact
// kernels use their own f32 tile GEMM (see kernels/tile_gemm.hpp). The second
// argument is the right operand's row stride: 0 its width (K^T in a 256-key tile,
// V, Q: an even number of cache lines), 1 exact::padded_ld of it, as the kernels
// lay out their copies of K, V, Q and dO (see ops/exact/head_copies.hpp).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/tile_gemm.hpp"
#include "ops/exact/head_views.hpp"

namespace lorafast {
namespace {

using kernels::Op;

// Which product of the attention tiles: rows and columns of C and the inner length.
enum class Shape { scores, times_v, transposed_times_q };

template <bool Blas>
void tile_product(benchmark::State& state) {
  const auto shape = static_cast<Shape>(state.range(0));
  constexpr std::int64_t rows = 128, keys = 256, e = 64;
  std::vector<float> a(keys * keys), b(keys * exact::padded_ld<float>(keys)), c(keys * keys);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto* v : {&a, &b, &c})
    for (auto& x : *v) x = dist(rng);
  // S = Q K^T with K^T stored [E, L]; acc += P V; dK += dS^T Q.
  const Op op_a = shape == Shape::transposed_times_q ? Op::trans : Op::none;
  const std::int64_t m = shape == Shape::transposed_times_q ? keys : rows;
  const std::int64_t n = shape == Shape::scores ? keys : e;
  const std::int64_t k = shape == Shape::scores ? e : shape == Shape::times_v ? keys : rows;
  const MatrixView<const float> a_view{a.data(), op_a == Op::none ? m : k, op_a == Op::none ? k : m,
                                       op_a == Op::none ? k : m};
  const std::int64_t ldb = state.range(1) ? exact::padded_ld<float>(n) : n;
  const MatrixView<const float> b_view{b.data(), k, n, ldb};
  const MatrixView<float> c_view{c.data(), m, n, n};
  for (auto _ : state) {
    if constexpr (Blas)
      kernels::gemm(op_a, Op::none, 1.0f, a_view, b_view, 1.0f, c_view);
    else
      kernels::tile_gemm(op_a, Op::none, 1.0f, a_view, b_view, 1.0f, c_view);
    benchmark::DoNotOptimize(c.data());
  }
  state.SetLabel(shape == Shape::scores ? "S = Q K^T" : shape == Shape::times_v ? "acc += P V" : "dK += dS^T Q");
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * m * n * k, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}

BENCHMARK(tile_product<false>)->Name("tile_gemm")->ArgsProduct({{0, 1, 2}, {0, 1}});
BENCHMARK(tile_product<true>)->Name("blas_gemm")->ArgsProduct({{0, 1, 2}, {0, 1}});

}  // namespace
}  // namespace lorafast
