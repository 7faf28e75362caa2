// Peak multiply-add rates. f32: each thread runs `chains` independent accumulators
// (enough to cover the FMA latency times the number of FMA pipes on current x86
// cores: 4 cycles x 2 pipes), a = a * b + c, which converges to c / (1 - b) and so
// never reaches subnormals. bf16: the same chains of bf16 pair dot products. The sum of
// the accumulators is returned so the loop is not optimized away.
#include <omp.h>

#include <algorithm>
#include <chrono>

#include "kernels/tile_gemm.hpp"
#include "lorafast/bf16.hpp"
#include "lorafast/fma_peak.hpp"
#include "lorafast/threads.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LORAFAST_DOT_PAIR_PEAK 1
#endif

namespace lorafast {
namespace {

constexpr int chains = 12;
constexpr std::int64_t steps = 1 << 20;  // per timed run: about 4 ms per thread at 100 GFLOP/s

#ifdef LORAFAST_TILE_KERNEL
using kernels::tile_detail::Simd;
constexpr int lanes = Simd::lanes, vector_bits = 32 * Simd::lanes;

float run_chains() {
  Simd::Vec acc[chains];
  for (int i = 0; i < chains; ++i) acc[i] = Simd::set1(1.0f + 1e-3f * static_cast<float>(i));
  const Simd::Vec b = Simd::set1(0.999f), c = Simd::set1(1e-4f);
  for (std::int64_t s = 0; s < steps; ++s)
#pragma GCC unroll 12
    for (int i = 0; i < chains; ++i) acc[i] = Simd::fmadd(acc[i], b, c);
  for (int i = 1; i < chains; ++i) acc[0] = Simd::add(acc[0], acc[i]);
  float out[lanes];
  Simd::store(out, acc[0]);
  return out[0];
}
#else
// No tile kernel for this build: what the compiler makes of plain loops, the same
// code every other f32 loop of the library gets.
constexpr int lanes = 16, vector_bits = 0;

float run_chains() {
  float acc[chains][lanes];
  for (int i = 0; i < chains; ++i) std::fill(acc[i], acc[i] + lanes, 1.0f + 1e-3f * static_cast<float>(i));
  for (std::int64_t s = 0; s < steps; ++s)
    for (int i = 0; i < chains; ++i)
#pragma omp simd
      for (int v = 0; v < lanes; ++v) acc[i][v] = acc[i][v] * 0.999f + 1e-4f;
  float sum = 0;
  for (int i = 0; i < chains; ++i) sum += acc[i][0];
  return sum;
}
#endif

#ifdef LORAFAST_DOT_PAIR_PEAK
// vdpbf16ps: in each of 16 f32 lanes, acc += a0 b0 + a1 b1 (four flops). The products
// (1e-3 squared) keep the sums far from overflow over a run.
__attribute__((target("avx512f,avx512bf16"))) float run_dot_pair_chains() {
  __m512 acc[chains];
  for (int i = 0; i < chains; ++i) acc[i] = _mm512_set1_ps(1.0f + 1e-3f * static_cast<float>(i));
  const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3a833a83);  // the pair (1e-3, 1e-3) in bf16
  for (std::int64_t s = 0; s < steps; ++s)
#pragma GCC unroll 12
    for (int i = 0; i < chains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], x, x);
  for (int i = 1; i < chains; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
  float out[16];
  _mm512_storeu_ps(out, acc[0]);
  return out[0];
}
#else
float run_dot_pair_chains() { return 0; }
#endif

// Best rate of `run` (flops_per_thread each) on every thread, over at least 3 runs and
// min_time seconds.
template <class Run>
double best_gflops(double min_time, double flops_per_thread, Run run) {
  using Clock = std::chrono::steady_clock;
  const int threads = num_threads();
  const double flops = flops_per_thread * threads;
  double best = 0;
  const auto start = Clock::now();
  volatile float sink = 0;
  for (int r = 0; r < 3 || std::chrono::duration<double>(Clock::now() - start).count() < min_time; ++r) {
    float sum = 0;
    const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : sum)
    sum += run();
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    sink = sink + sum;
    best = std::max(best, flops / seconds / 1e9);
  }
  return best;
}

}  // namespace

FmaPeak measure_fma_peak(double min_time) {
  return {best_gflops(min_time, 2.0 * lanes * chains * static_cast<double>(steps), run_chains), vector_bits};
}

std::optional<FmaPeak> measure_bf16_peak(double min_time) {
  if (!cpu_has_bf16_arithmetic()) return std::nullopt;
  return FmaPeak{best_gflops(min_time, 4.0 * 16 * chains * static_cast<double>(steps), run_dot_pair_chains), 512};
}

}  // namespace lorafast
