// `lorafast bench`: times the exact attention forward + backward (one iteration =
// attention_fwd then attention_bwd) on random inputs, and a same-run GEMM on the
// same thread count as the machine-independent yardstick (DESIGN.md item 8), and the
// machine's f32 multiply-add peak, the bound no kernel exceeds (and its bf16
// dot-product peak beside it, where the CPU has one).
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <cblas.h>
#include <omp.h>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "precision.hpp"
#include "lorafast/attention.hpp"
#include "lorafast/error.hpp"
#include "lorafast/fma_peak.hpp"
#include "lorafast/threads.hpp"

namespace lorafast::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchFlags {
  std::vector<std::int64_t> seq_lens{512, 1024, 2048};
  std::int64_t head_dim = 64, heads = 1, batch = 1;
  bool causal = false;
  std::int64_t window = 0;  // AttentionParams::window (needs --causal); 0: none
  std::string dtype = "f32";
  std::string layout = "nlhe";  // nlhe: [N, L, H*E] (the models' projections); nhle: [N, H, L, E] (SDPA's)
  int reps = 0;           // 0: adaptive
  double min_time = 1.0;  // seconds per size when adaptive
  std::int64_t gemm_size = 2048;
  bool json = false, csv = false;
};

struct SizeResult {
  std::int64_t seq_len = 0;
  int reps = 0;
  double ms_median = 0, ms_min = 0, gflops = 0, peak_rss_mb = 0;
};

// Linux (>= 4.0) resets the process's peak RSS, which getrusage also reports, when "5"
// is written to clear_refs; that makes the peak per size (after glibc hands freed heap
// back to the kernel). Best effort: false if refused.
bool reset_peak_rss() {
  malloc_trim(0);
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(line.find_first_not_of(' ', colon + 1));
    }
  return "unknown";
}

nlohmann::json env_or_null(const char* name) {
  const char* value = std::getenv(name);
  return value ? nlohmann::json(value) : nlohmann::json(nullptr);
}

nlohmann::json machine_info() {
  return {{"cpu", cpu_model()},
          {"threads", num_threads()},
          {"openblas_coretype", env_or_null("OPENBLAS_CORETYPE")},
          {"openblas_corename", openblas_get_corename()},
          {"omp_wait_policy", env_or_null("OMP_WAIT_POLICY")},
          {"gomp_spincount", env_or_null("GOMP_SPINCOUNT")}};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const auto n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Runs `body` once untimed (page faults, caches), then `reps` times, or while fewer
// than 3 reps or less than `min_time` seconds have been spent; returns ms per rep.
template <class Body>
std::vector<double> time_reps(int reps, double min_time, Body body) {
  body();
  std::vector<double> ms;
  const auto start = Clock::now();
  while (true) {
    const auto t0 = Clock::now();
    body();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    const double spent = std::chrono::duration<double>(Clock::now() - start).count();
    if (reps > 0 ? static_cast<int>(ms.size()) >= reps : (ms.size() >= 3 && spent >= min_time)) break;
    if (reps <= 0 && ms.size() >= 10000) break;
  }
  return ms;
}

// Same-run GEMM peak: a size^3 GEMM with its rows split across our OpenMP threads,
// OpenBLAS single-threaded inside each, exactly how the attention kernels call BLAS
// (so the ratio measures the kernel, not a different threading model). Best of the reps.
template <class T>
double gemm_gflops(std::int64_t n, double min_time) {
  std::vector<T> a(n * n), b(n * n), c(n * n);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<T> dist(-1, 1);
  for (auto* m : {&a, &b})
    for (auto& x : *m) x = dist(rng);
  const auto body = [&] {
#pragma omp parallel
    {
      const std::int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
      const std::int64_t chunk = (n + threads - 1) / threads;
      const std::int64_t r0 = std::min(n, t * chunk), rows = std::min(n, r0 + chunk) - r0;
      if (rows > 0) {
        if constexpr (std::is_same_v<T, float>)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, n, n, 1.0f, a.data() + r0 * n, n, b.data(),
                      n, 0.0f, c.data() + r0 * n, n);
        else
          cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, n, n, 1.0, a.data() + r0 * n, n, b.data(),
                      n, 0.0, c.data() + r0 * n, n);
      }
    }
  };
  const auto ms = time_reps(0, min_time, body);
  return 2.0 * n * n * n / (*std::min_element(ms.begin(), ms.end()) * 1e6);
}

// Sanity gate before timing: a few rows of O and dQ of the last head of the first
// sequence (every tensor in the bench's one layout), recomputed in double directly from SPEC.md §2 (O(L*E) per row). It catches
// a broken kernel (wrong tile, mask or head offset), not rounding: the bound (1e-3 in
// f32, 1e-2 with bf16 products, 1e-9 in f64, relative to the size of the summed terms)
// is far above the kernels' rounding error (bf16: P and dS rounded to 8 bits, at most
// 2^-8 of that size), which the test suite bounds tightly.
template <class T>
void validate(const AttentionParams<T>& p) {
  const std::int64_t L = p.seq_len, E = p.head_dim, D = p.heads * p.head_dim, h = p.heads - 1;
  const double tol = p.bf16_products ? 1e-2 : std::is_same_v<T, float> ? 1e-3 : 1e-9;
  const HeadStrides s = p.q_strides.unset() ? HeadStrides{L * D, D, E} : p.q_strides;
  const auto at = [&](const T* m, std::int64_t row, std::int64_t e) { return double(m[row * s.row + h * s.head + e]); };
  for (const std::int64_t i : {std::int64_t{0}, L / 3, L / 2, L - 1}) {
    // Keys first .. first + keys - 1 (the sliding window's, or all up to the causal diagonal).
    const std::int64_t first = p.window > 0 ? std::max<std::int64_t>(0, i - p.window + 1) : 0;
    const std::int64_t keys = (p.causal ? i + 1 : L) - first;
    const auto key = [&](const T* m, std::int64_t j, std::int64_t e) { return at(m, first + j, e); };
    std::vector<double> s(keys), o(E, 0.0), dq(E, 0.0);
    for (std::int64_t j = 0; j < keys; ++j) {
      double dot = 0;
      for (std::int64_t e = 0; e < E; ++e) dot += at(p.q, i, e) * key(p.k, j, e);
      s[j] = p.scale * dot;
    }
    const double mx = *std::max_element(s.begin(), s.end());
    double sum = 0;
    for (auto& x : s) sum += (x = std::exp(x - mx));
    for (auto& x : s) x /= sum;  // s is now the row of P
    // Rounding error of a sum scales with the sum of its terms' sizes, not with the
    // result (dQ of a row attending to itself alone is exactly 0): normalise by those.
    double size_o = 0, size_dq = 0;
    for (std::int64_t j = 0; j < keys; ++j) {
      double norm_v = 0;
      for (std::int64_t e = 0; e < E; ++e) {
        o[e] += s[j] * key(p.v, j, e);
        norm_v += key(p.v, j, e) * key(p.v, j, e);
      }
      size_o += s[j] * std::sqrt(norm_v);
    }
    double delta = 0;
    for (std::int64_t e = 0; e < E; ++e) delta += at(p.d_o, i, e) * o[e];
    for (std::int64_t j = 0; j < keys; ++j) {
      double dp = 0, norm_k = 0;
      for (std::int64_t e = 0; e < E; ++e) dp += at(p.d_o, i, e) * key(p.v, j, e);
      for (std::int64_t e = 0; e < E; ++e) {
        dq[e] += p.scale * s[j] * (dp - delta) * key(p.k, j, e);
        norm_k += key(p.k, j, e) * key(p.k, j, e);
      }
      size_dq += p.scale * s[j] * (std::abs(dp) + std::abs(delta)) * std::sqrt(norm_k);
    }
    const auto rel_err = [&](const T* got, const std::vector<double>& want, double size) {
      double err = 0;
      for (std::int64_t e = 0; e < E; ++e) err += std::pow(at(got, i, e) - want[e], 2);
      return std::sqrt(err) / std::max(size, 1e-300);
    };
    const double err_o = rel_err(p.o, o, size_o), err_dq = rel_err(p.d_q, dq, size_dq);
    LF_CHECK(err_o <= tol && err_dq <= tol, ErrorKind::cannot_meet, "bench: kernel disagrees with the double check at L=",
             L, " row ", i, " (relative error O ", err_o, ", dQ ", err_dq, ", bound ", tol, ")");
  }
}

// The (query, key) pairs a sequence computes: L^2, half when causal; with a window W
// < L, the W (W + 1) / 2 of the first W rows plus W for each later one.
double score_pairs(const BenchFlags& f, std::int64_t L) {
  const double l = double(L), w = double(f.window);
  if (f.window > 0 && f.window < L) return w * (w + 1) / 2 + (l - w) * w;
  return f.causal ? 0.5 * l * l : l * l;
}

template <class T>
SizeResult run_size(const BenchFlags& f, std::int64_t L, bool& rss_per_size) {
  const std::int64_t n = f.batch * L * f.heads * f.head_dim;
  std::vector<T> q(n), k(n), v(n), d_o(n), o(n), d_q(n), d_k(n), d_v(n), lse(f.batch * f.heads * L);
  std::mt19937_64 rng(static_cast<std::uint64_t>(L));
  std::normal_distribution<T> normal(0, 1);
  for (auto* m : {&q, &k, &v, &d_o})
    for (auto& x : *m) x = normal(rng);
  AttentionParams<T> p;
  p.batch = f.batch;
  p.seq_len = L;
  p.heads = f.heads;
  p.head_dim = f.head_dim;
  p.scale = 1.0 / std::sqrt(static_cast<double>(f.head_dim));
  p.causal = f.causal;
  p.window = f.window;
  p.bf16_products = f.dtype == "bf16";
  p.q = q.data(), p.k = k.data(), p.v = v.data(), p.o = o.data(), p.lse = lse.data();
  p.d_o = d_o.data(), p.d_q = d_q.data(), p.d_k = d_k.data(), p.d_v = d_v.data();
  if (f.layout == "nhle") {
    const HeadStrides head_major{f.heads * L * f.head_dim, f.head_dim, L * f.head_dim};
    for (HeadStrides* s : {&p.q_strides, &p.k_strides, &p.v_strides, &p.o_strides, &p.d_o_strides, &p.d_q_strides,
                           &p.d_k_strides, &p.d_v_strides})
      *s = head_major;
  }
  bool validated = false;
  if (reset_peak_rss()) rss_per_size = true;
  const auto ms = time_reps(f.reps, f.min_time, [&] {
    attention_fwd(p);
    attention_bwd(p);
    if (!validated) validate(p), validated = true;  // once, on the untimed warm-up
  });
  SizeResult r;
  r.seq_len = L;
  r.reps = static_cast<int>(ms.size());
  r.ms_median = median(ms);
  r.ms_min = *std::min_element(ms.begin(), ms.end());
  const double flops = 14.0 * score_pairs(f, L) * double(f.head_dim) * double(f.heads * f.batch);
  r.gflops = flops / (r.ms_median * 1e6);
  r.peak_rss_mb = peak_rss_mb();
  return r;
}

// Percent of the multiply-add peak, or nothing when the run measured none (f64).
std::optional<double> percent_of_peak(double gflops, const std::optional<FmaPeak>& peak) {
  if (!peak) return std::nullopt;
  return 100.0 * gflops / peak->gflops;
}

std::string case_name(const BenchFlags& f, std::int64_t L) {
  return cat("attn/", f.causal ? "causal" : "bidir", "/N", f.batch, "/L", L, "/E", f.head_dim, "/H", f.heads,
             f.window > 0 ? cat("/W", f.window) : "");
}

// The machine's peaks in one run: f32 multiply-adds (measured in f32 runs only) and
// bf16 pair dot products (where the CPU has them).
struct Peaks {
  std::optional<FmaPeak> f32, bf16;
};

nlohmann::json peak_json(const std::optional<FmaPeak>& peak, const char* method) {
  if (!peak) return nullptr;
  return {{"gflops", peak->gflops}, {"vector_bits", peak->vector_bits}, {"method", method}};
}

void print_results(const BenchFlags& f, const std::vector<SizeResult>& results, double gemm, const Peaks& peaks,
                   bool rss_per_size) {
  const auto& peak = peaks.f32;
  const char* routine = f.dtype == "f64" ? "dgemm" : "sgemm";
  // Each run's share of the peak of its own precision: bf16 products against the bf16 one.
  const bool bf16 = f.dtype == "bf16";
  const auto& own_peak = bf16 ? peaks.bf16 : peak;
  const auto machine = machine_info();
  if (f.json) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& r : results) {
      nlohmann::json row{{"case", case_name(f, r.seq_len)}, {"seq_len", r.seq_len}, {"head_dim", f.head_dim},
                         {"heads", f.heads}, {"batch", f.batch}, {"causal", f.causal}, {"window", f.window},
                         {"reps", r.reps},
                         {"ms_median", r.ms_median}, {"ms_min", r.ms_min}, {"gflops", r.gflops},
                         {"gemm_gflops", gemm}, {"pct_gemm", 100.0 * r.gflops / gemm},
                         {"peak_rss_mb", r.peak_rss_mb}};
      if (const auto pct = percent_of_peak(r.gflops, peak)) row["pct_fma_peak"] = *pct;
      if (bf16)
        if (const auto pct = percent_of_peak(r.gflops, peaks.bf16)) row["pct_bf16_peak"] = *pct;
      rows.push_back(row);
    }
    const nlohmann::json gemm_info{{"routine", routine}, {"size", f.gemm_size}, {"gflops", gemm},
                                   {"method", "rows split across OpenMP threads, single-threaded OpenBLAS, best rep of runs before and after"}};
    const nlohmann::json out{
        {"machine", machine}, {"dtype", f.dtype},
        {"flop_count", "14*E per (query, key) pair of a head: L^2, half when causal, about L*W with a window"},
        {"gemm", gemm_info},
        {"fma_peak", peak_json(peak, "f32 independent multiply-add chains on every thread, best of runs before and "
                                     "after")},
        {"bf16_peak", peak_json(peaks.bf16, "bf16 pair dot products (vdpbf16ps, 4 flops per f32 lane) in independent "
                                            "chains on every thread, best of runs before and after")},
        {"peak_rss", rss_per_size ? "per size" : "per process"},
        {"results", rows}};
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  if (f.csv) {
    std::printf("case,L,E,H,N,causal,dtype,threads,reps,ms_median,ms_min,gflops,gemm_gflops,pct_gemm,peak_rss_mb,"
                "fma_peak_gflops,pct_fma_peak,bf16_peak_gflops,pct_bf16_peak\n");
    for (const auto& r : results)
      std::printf("%s,%lld,%lld,%lld,%lld,%d,%s,%d,%d,%.4f,%.4f,%.3f,%.3f,%.2f,%.1f,%s,%s,%s,%s\n",
                  case_name(f, r.seq_len).c_str(), static_cast<long long>(r.seq_len),
                  static_cast<long long>(f.head_dim), static_cast<long long>(f.heads),
                  static_cast<long long>(f.batch), f.causal ? 1 : 0, f.dtype.c_str(), num_threads(), r.reps,
                  r.ms_median, r.ms_min, r.gflops, gemm, 100.0 * r.gflops / gemm, r.peak_rss_mb,
                  peak ? cat(peak->gflops).c_str() : "", peak ? cat(*percent_of_peak(r.gflops, peak)).c_str() : "",
                  peaks.bf16 ? cat(peaks.bf16->gflops).c_str() : "",
                  bf16 && peaks.bf16 ? cat(*percent_of_peak(r.gflops, peaks.bf16)).c_str() : "");
    return;
  }
  const auto coretype = machine["openblas_coretype"];
  std::printf("exact attention fwd+bwd, %s, E=%lld H=%lld N=%lld, %s\n", f.dtype.c_str(),
              static_cast<long long>(f.head_dim), static_cast<long long>(f.heads), static_cast<long long>(f.batch),
              f.causal ? "causal" : "bidirectional");
  auto text = [](const nlohmann::json& value) {
    return value.is_null() ? std::string("(unset)") : value.get<std::string>();
  };
  std::printf("cpu: %s | threads: %d | OPENBLAS_CORETYPE: %s | OpenBLAS core: %s | OMP_WAIT_POLICY: %s | "
              "GOMP_SPINCOUNT: %s\n",
              machine["cpu"].get<std::string>().c_str(), num_threads(), text(coretype).c_str(),
              machine["openblas_corename"].get<std::string>().c_str(), text(machine["omp_wait_policy"]).c_str(),
              text(machine["gomp_spincount"]).c_str());
  std::printf("%s %lld^3 on %d threads: %.1f GFLOP/s", routine, static_cast<long long>(f.gemm_size), num_threads(),
              gemm);
  if (peak) std::printf(" | f32 multiply-add peak: %.1f GFLOP/s", peak->gflops);
  if (peaks.bf16) std::printf(" | bf16 dot-product peak: %.1f GFLOP/s", peaks.bf16->gflops);
  std::printf("\n\n");
  std::printf("%8s %6s %12s %10s %9s %9s %13s\n", "L", "reps", "ms (median)", "GFLOP/s", "% gemm",
              bf16 ? "% bf16 pk" : "% peak",
              rss_per_size ? "peak RSS MiB" : "proc RSS MiB");
  for (const auto& r : results) {
    char pct[32] = "-";
    if (const auto p = percent_of_peak(r.gflops, own_peak)) std::snprintf(pct, sizeof pct, "%.1f%%", *p);
    std::printf("%8lld %6d %12.3f %10.1f %8.1f%% %9s %13.1f\n", static_cast<long long>(r.seq_len), r.reps,
                r.ms_median, r.gflops, 100.0 * r.gflops / gemm, pct, r.peak_rss_mb);
  }
}

// The GEMM and the peak run before and after the sizes and the faster run counts, so
// a burst of other load on the machine during one of them does not inflate the ratio.
// If the peak RSS cannot be reset per size, the first GEMM is skipped to keep its
// buffers out of it.
// The multiply-add peak is measured in f32 only: f64 runs report no percentage of it.
template <class T>
void run_bench(const BenchFlags& f) {
  const double gemm_time = std::min(f.min_time, 0.5);
  const bool can_reset = reset_peak_rss();
  double gemm = can_reset ? gemm_gflops<T>(f.gemm_size, gemm_time) : 0.0;
  Peaks peaks;
  auto& peak = peaks.f32;
  if constexpr (std::is_same_v<T, float>) peak = measure_fma_peak(gemm_time);
  peaks.bf16 = measure_bf16_peak(gemm_time);
  std::vector<SizeResult> results;
  bool rss_per_size = false;
  for (const auto L : f.seq_lens) results.push_back(run_size<T>(f, L, rss_per_size));
  gemm = std::max(gemm, gemm_gflops<T>(f.gemm_size, gemm_time));
  if (peak) peak->gflops = std::max(peak->gflops, measure_fma_peak(gemm_time).gflops);
  if (peaks.bf16) peaks.bf16->gflops = std::max(peaks.bf16->gflops, measure_bf16_peak(gemm_time)->gflops);
  print_results(f, results, gemm, peaks, rss_per_size);
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto f = std::make_shared<BenchFlags>();
  auto* cmd = app.add_subcommand("bench", "Time exact attention forward + backward against a same-run GEMM");
  cmd->add_option("--seq-len", f->seq_lens, "Sequence lengths L (repeatable)")->check(CLI::PositiveNumber);
  cmd->add_option("--head-dim", f->head_dim, "Head width E")->check(CLI::PositiveNumber);
  cmd->add_option("--heads", f->heads, "Heads H")->check(CLI::PositiveNumber);
  cmd->add_option("--batch", f->batch, "Batch N")->check(CLI::PositiveNumber);
  auto* causal = cmd->add_flag("--causal", f->causal, "Causal mask");
  cmd->add_option("--window", f->window, "Causal sliding window W: each query sees its last W keys")
      ->check(CLI::PositiveNumber)
      ->needs(causal);
  cmd->add_option("--dtype", f->dtype, "f32 | f64 | bf16 (f32 tensors, bf16 tile products)")
      ->check(CLI::IsMember({"f32", "f64", "bf16"}));
  cmd->add_option("--layout", f->layout, "nlhe: [N, L, H*E], heads side by side (default); nhle: [N, H, L, E], SDPA's")
      ->check(CLI::IsMember({"nlhe", "nhle"}));
  cmd->add_option("--reps", f->reps, "Timed repetitions (default: at least 3 and --min-time)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--min-time", f->min_time, "Seconds per size when --reps is not given")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--gemm-size", f->gemm_size, "Size of the same-run square GEMM")->check(CLI::PositiveNumber);
  auto* json = cmd->add_flag("--json", f->json, "JSON output");
  cmd->add_flag("--csv", f->csv, "CSV output")->excludes(json);
  add_threads_option(*cmd);
  cmd->callback([f] {
    note_bf16_fallback(f->dtype);
    f->dtype == "f64" ? run_bench<double>(*f) : run_bench<float>(*f);
  });
}

}  // namespace lorafast::cli
