// Peak f32 multiply-add rate: each thread runs `chains` independent accumulators
// (enough to cover the FMA latency times the number of FMA pipes on current x86
// cores: 4 cycles x 2 pipes), a = a * b + c, which converges to c / (1 - b) and so
// never reaches subnormals. The sum of the accumulators is returned so the loop is
// not optimized away.
#include <omp.h>

#include <algorithm>
#include <chrono>

#include "kernels/tile_gemm.hpp"
#include "lorafast/fma_peak.hpp"
#include "lorafast/threads.hpp"

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

}  // namespace

FmaPeak measure_fma_peak(double min_time) {
  using Clock = std::chrono::steady_clock;
  const int threads = num_threads();
  const double flops = 2.0 * lanes * chains * static_cast<double>(steps) * threads;
  FmaPeak peak{0, vector_bits};
  const auto start = Clock::now();
  volatile float sink = 0;
  for (int run = 0; run < 3 || std::chrono::duration<double>(Clock::now() - start).count() < min_time; ++run) {
    float sum = 0;
    const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : sum)
    sum += run_chains();
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    sink = sink + sum;
    peak.gflops = std::max(peak.gflops, flops / seconds / 1e9);
  }
  return peak;
}

}  // namespace lorafast
