// `lorafast calibrate`: times exact, fast and chained attention (forward + backward, one head,
// f32, random bounded inputs) over a grid of sizes on this machine, fits the cost
// model's coefficients (cost_model.hpp) and saves them where `grad` and `phase` read
// them, so that --method auto picks the faster method here. Prints measured vs
// predicted per size. Takes under a minute.
//
// Each size runs on one thread and is timed in process CPU time, divided by the
// thread count (--threads, default all cores): on a shared machine wall time mostly
// measures the other jobs (a barrier waits a whole time slice for a descheduled
// thread), while one thread's CPU time is reproducible; both methods parallelise
// over independent row blocks, so dividing by the threads keeps their ratio.
#include <algorithm>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "lorafast/attention.hpp"
#include "lorafast/cost_model.hpp"
#include "lorafast/error.hpp"
#include "lorafast/fast_attention.hpp"
#include "lorafast/features.hpp"
#include "lorafast/threads.hpp"

namespace lorafast::cli {
namespace {

struct CalibrateFlags {
  std::string out;  // default: default_cost_model_path()
  bool dry_run = false, json = false;
  int reps = 3;
};

// The grid: lengths on both sides of the crossovers, E in {8, 16}, degrees 2..6.
struct Size {
  std::int64_t seq_len, head_dim;
  int degree;  // -1: exact
  bool causal;
  bool chained = false;  // the chained backward instead of the fast one
};

std::vector<Size> grid() {
  std::vector<Size> sizes;
  for (bool causal : {false, true})
    for (std::int64_t e : {8, 16}) {
      for (std::int64_t l : {128, 512, 2048, 8192}) sizes.push_back({l, e, -1, causal});
      for (int g : {2, 4, 6}) {
        if (e == 16 && g == 6) continue;  // F = 74613: slower than exact at every length timed here
        for (std::int64_t l : {512, 4096, 16384}) sizes.push_back({l, e, g, causal});
      }
    }
  // Chained only needs its ratio to fast (CostModel::chained_factor).
  for (bool causal : {false, true})
    for (int g : {2, 4})
      for (std::int64_t l : {4096, 16384}) sizes.push_back({l, 8, g, causal, true});
  return sizes;
}

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Best of `reps` CPU times of one forward + backward, after one untimed run.
double time_size(const Size& s, int reps) {
  const std::int64_t n = s.seq_len * s.head_dim;
  std::vector<float> q(n), k(n), v(n), d_o(n), o(n), d_q(n), d_k(n), d_v(n), lse(s.seq_len);
  std::mt19937_64 rng(static_cast<std::uint64_t>(s.seq_len * 131 + s.head_dim));
  std::normal_distribution<float> normal(0, 0.3f);  // bounded scores, as where fast is used
  for (auto* m : {&q, &k, &v, &d_o})
    for (auto& x : *m) x = normal(rng);
  AttentionParams<float> p;
  p.seq_len = s.seq_len;
  p.head_dim = s.head_dim;
  p.scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));
  p.causal = s.causal;
  p.q = q.data(), p.k = k.data(), p.v = v.data(), p.o = o.data(), p.lse = lse.data();
  p.d_o = d_o.data(), p.d_q = d_q.data(), p.d_k = d_k.data(), p.d_v = d_v.data();
  SurrogateConfig config;
  config.degree = s.degree;
  config.chunk = causal_chunk;
  const auto once = [&] {
    const double t0 = cpu_seconds();
    if (s.degree < 0) {
      attention_fwd(p);
      attention_bwd(p);
    } else {
      fast_attention_fwd(p, 0, config);
      if (s.chained)
        chained_attention_bwd(p, 0, config);
      else
        fast_attention_bwd(p, 0, config);
    }
    return cpu_seconds() - t0;
  };
  once();
  double best = INFINITY;
  for (int r = 0; r < reps; ++r) best = std::min(best, once());
  return best;
}

void run_calibrate(const CalibrateFlags& f) {
  const std::string path = f.out.empty() ? default_cost_model_path() : f.out;
  LF_CHECK(f.dry_run || !path.empty(), ErrorKind::usage,
           "no place to save the cost model: set --out, LORAFAST_COST_MODEL or HOME, or pass --dry-run");
  std::vector<Size> sizes = grid();
  std::vector<CostSample> samples;
  const int threads = num_threads();
  set_num_threads(1);
  for (const auto& s : sizes) {
    CostSample c;
    c.seq_len = s.seq_len;
    c.head_dim = s.head_dim;
    c.causal = s.causal;
    c.chained = s.chained;
    c.features = s.degree < 0 ? 0 : taylor_feature_count(s.head_dim, s.degree);
    c.seconds = time_size(s, f.reps) / threads;
    samples.push_back(c);
  }
  set_num_threads(threads);
  const CostModel model = fit_cost_model(samples, threads);
  if (!f.dry_run) save_cost_model(model, path);
  nlohmann::json rows = nlohmann::json::array();
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const auto& c = samples[i];
    const double predicted = c.chained        ? model.chained_seconds(1, c.seq_len, c.head_dim, c.features, c.causal)
                             : c.features > 0 ? model.fast_seconds(1, c.seq_len, c.head_dim, c.features, c.causal)
                                              : model.exact_seconds(1, c.seq_len, c.head_dim, c.causal);
    const char* method = c.chained ? "chained" : c.features > 0 ? "fast" : "exact";
    rows.push_back({{"method", method}, {"seq_len", c.seq_len}, {"head_dim", c.head_dim},
                    {"causal", c.causal}, {"degree", sizes[i].degree < 0 ? nlohmann::json(nullptr) : nlohmann::json(sizes[i].degree)},
                    {"features", c.features}, {"measured", c.seconds}, {"predicted", predicted}});
  }
  const nlohmann::json coefficients{
      {"exact_quadratic", model.exact_quadratic}, {"exact_scores", model.exact_scores},
      {"exact_fixed", model.exact_fixed},         {"fast_state", model.fast_state},
      {"fast_map", model.fast_map},               {"fast_chunk", model.fast_chunk},
      {"fast_fixed", model.fast_fixed},           {"chained_factor", model.chained_factor},
      {"threads", model.threads}};
  if (f.json) {
    const nlohmann::json out{{"saved_to", f.dry_run ? nlohmann::json(nullptr) : nlohmann::json(path)},
                             {"model", coefficients}, {"samples", rows}};
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  std::printf("%-7s %6s %3s %-6s %6s %6s %12s %12s %7s\n", "method", "L", "E", "mask", "degree", "F", "measured",
              "predicted", "ratio");
  for (const auto& r : rows)
    std::printf("%-7s %6lld %3lld %-6s %6s %6lld %9.3f ms %9.3f ms %7.2f\n", r["method"].get<std::string>().c_str(),
                r["seq_len"].get<long long>(), r["head_dim"].get<long long>(), r["causal"].get<bool>() ? "causal" : "bidir",
                r["degree"].is_null() ? "-" : std::to_string(r["degree"].get<int>()).c_str(),
                r["features"].get<long long>(), 1e3 * r["measured"].get<double>(), 1e3 * r["predicted"].get<double>(),
                r["predicted"].get<double>() / r["measured"].get<double>());
  std::printf("coefficients (seconds per unit, %d threads): %s\n", model.threads, coefficients.dump().c_str());
  if (!f.dry_run) std::printf("saved to %s\n", path.c_str());
}

}  // namespace

void add_calibrate_command(CLI::App& app) {
  auto f = std::make_shared<CalibrateFlags>();
  auto* cmd = app.add_subcommand("calibrate", "Measure exact and fast attention here and save the cost model that "
                                              "--method auto uses");
  cmd->add_option("--out", f->out, "Where to save (default: $LORAFAST_COST_MODEL, else "
                                   "$XDG_CACHE_HOME or ~/.cache, /lorafast/cost_model.json)");
  cmd->add_flag("--dry-run", f->dry_run, "Measure and print, save nothing");
  cmd->add_option("--reps", f->reps, "Timed repetitions per size (best is kept)")->check(CLI::PositiveNumber);
  cmd->add_flag("--json", f->json, "JSON output");
  add_threads_option(*cmd);
  cmd->callback([f] { run_calibrate(*f); });
}

}  // namespace lorafast::cli
