// Predicted wall time of one attention head over the whole batch (fwd + bwd), as a
// sum of work terms whose coefficients (seconds per unit, all threads) are measured
// on the machine by `lorafast calibrate` (fit_cost_model) and cached in a file that
// the CLI reads (load_cost_model); the compiled-in defaults are such a measurement.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lorafast/fast_attention.hpp"  // causal_chunk

namespace lorafast {

// Defaults: `lorafast calibrate --reps 5 --out FILE` on the development machine (2
// cores of a Xeon with AVX-512, OpenBLAS 0.3.21, AVX-512 tile GEMM, load ~5),
// threads = 2: predicted / measured in 0.70..1.58 over its 54 sizes (exact 0.82..1.30;
// fast underestimates F = 4845 by up to 29%; chained overestimates F = 45 causal by 55%).
struct CostModel {
  // exact: per N*L^2*E (score and gradient GEMMs) and per N*L^2 (exponentials and
  // softmax), both halved under the causal mask, and per call.
  double exact_quadratic = 2.31e-11;
  double exact_scores = 1.05e-9;
  double exact_fixed = 1.86e-5;
  // fast: per N*L*F*(E+1) (state products), per N*L*F (feature maps and their
  // backward), per N*L*C*E (causal: the exact in-chunk attention), per call.
  double fast_state = 1.84e-10;
  double fast_map = 0;
  double fast_chunk = 1.78e-10;
  double fast_fixed = 1.02e-5;
  // chained: its time over E x the fast path's at the same degree (median of the
  // chained sizes of the same command, rerun after the chained backward moved to the
  // degree-(g+1) states: 0.66..1.05 predicted / measured).
  double chained_factor = 0.22;
  int threads = 2;  // thread count of the measurement the coefficients come from

  double exact_seconds(std::int64_t batch, std::int64_t seq_len, std::int64_t head_dim, bool causal) const;
  double fast_seconds(std::int64_t batch, std::int64_t seq_len, std::int64_t head_dim, std::int64_t features,
                      bool causal) const;
  // Chained (SPEC §3.2a) pays another factor E on the fast path's work, times chained_factor.
  double chained_seconds(std::int64_t batch, std::int64_t seq_len, std::int64_t head_dim, std::int64_t features,
                         bool causal) const;
};

// One timed run of one head: fast (chained when `chained`) when features > 0, else exact.
struct CostSample {
  std::int64_t batch = 1, seq_len = 0, head_dim = 0, features = 0;
  bool causal = false;
  double seconds = 0;
  bool chained = false;
};

// Least squares in relative error (each sample weighted by 1 / its time), with every
// coefficient kept >= 0; exact and fast samples fit their own terms. chained_factor is
// the median of the chained samples' measured / (E x fitted fast) time (1 without any).
CostModel fit_cost_model(const std::vector<CostSample>& samples, int threads);

// $LORAFAST_COST_MODEL, else $XDG_CACHE_HOME/lorafast/cost_model.json, else
// $HOME/.cache/lorafast/cost_model.json; empty when none of these is set.
std::string default_cost_model_path();
// Parses a cost-model file's text; Error(bad_input) naming `origin` when it is not a valid model.
CostModel parse_cost_model(const std::string& json_text, const std::string& origin);
// The model in `path`, or the defaults when the file does not exist. Throws
// Error(bad_input) naming the file when it exists but is not a valid model.
CostModel load_cost_model(const std::string& path);
// Writes atomically (atomic_file.hpp), creating the directory; throws as that does.
void save_cost_model(const CostModel& model, const std::string& path);

}  // namespace lorafast
