#include "lorafast/cost_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/json_read.hpp"
#include "core/text_file.hpp"
#include "lorafast/atomic_file.hpp"
#include "lorafast/error.hpp"

namespace lorafast {
namespace {

constexpr std::uint64_t max_cost_model_bytes = 1'000'000;

double as_double(std::int64_t v) { return static_cast<double>(v); }

// The work terms of each method, in the order of the CostModel coefficients.
constexpr int exact_terms = 3, fast_terms = 4;

std::vector<double> exact_work(std::int64_t n, std::int64_t l, std::int64_t e, bool causal) {
  const double scores = as_double(n) * as_double(l) * as_double(l) * (causal ? 0.5 : 1.0);
  return {scores * as_double(e), scores, 1.0};
}

std::vector<double> fast_work(std::int64_t n, std::int64_t l, std::int64_t e, std::int64_t f, bool causal) {
  const double rows = as_double(n) * as_double(l);
  return {rows * as_double(f) * as_double(e + 1), rows * as_double(f),
          causal ? rows * as_double(causal_chunk) * as_double(e) : 0.0, 1.0};
}

using Coefficient = double CostModel::*;
constexpr Coefficient exact_coefficients[exact_terms] = {&CostModel::exact_quadratic, &CostModel::exact_scores,
                                                         &CostModel::exact_fixed};
constexpr Coefficient fast_coefficients[fast_terms] = {&CostModel::fast_state, &CostModel::fast_map,
                                                       &CostModel::fast_chunk, &CostModel::fast_fixed};
const char* const exact_keys[exact_terms] = {"exact_quadratic", "exact_scores", "exact_fixed"};
const char* const fast_keys[fast_terms] = {"fast_state", "fast_map", "fast_chunk", "fast_fixed"};

double predict(const CostModel& m, const std::vector<double>& work, const Coefficient* coefficients) {
  double s = 0;
  for (std::size_t i = 0; i < work.size(); ++i) s += work[i] * (m.*coefficients[i]);
  return s;
}

// min sum_i (w_i . c / t_i - 1)^2 over c >= 0: normal equations on the free terms,
// dropping the most negative term until none is negative (a small active set).
std::vector<double> fit_non_negative(const std::vector<std::vector<double>>& work, const std::vector<double>& t,
                                     int terms) {
  std::vector<bool> free(terms, true);
  std::vector<double> c(terms, 0.0);
  for (int round = 0; round < terms; ++round) {
    std::vector<int> idx;
    for (int j = 0; j < terms; ++j)
      if (free[j]) idx.push_back(j);
    const int k = static_cast<int>(idx.size());
    if (k == 0) break;
    // Columns scaled to unit size so that the solve is well conditioned.
    std::vector<double> scale(k, 0.0);
    for (std::size_t i = 0; i < work.size(); ++i)
      for (int a = 0; a < k; ++a) scale[a] = std::max(scale[a], work[i][idx[a]] / t[i]);
    std::vector<double> m(k * (k + 1), 0.0);  // [A^T A | A^T 1], row-major k x (k+1)
    for (std::size_t i = 0; i < work.size(); ++i)
      for (int a = 0; a < k; ++a) {
        const double xa = work[i][idx[a]] / t[i] / scale[a];
        for (int b = 0; b < k; ++b) m[a * (k + 1) + b] += xa * work[i][idx[b]] / t[i] / scale[b];
        m[a * (k + 1) + k] += xa;
      }
    for (int a = 0; a < k; ++a) m[a * (k + 1) + a] *= 1 + 1e-12;  // keeps collinear terms solvable
    // Gaussian elimination with partial pivoting.
    for (int col = 0; col < k; ++col) {
      int pivot = col;
      for (int r = col + 1; r < k; ++r)
        if (std::abs(m[r * (k + 1) + col]) > std::abs(m[pivot * (k + 1) + col])) pivot = r;
      for (int j = 0; j <= k; ++j) std::swap(m[col * (k + 1) + j], m[pivot * (k + 1) + j]);
      const double d = m[col * (k + 1) + col];
      if (d == 0) continue;
      for (int r = 0; r < k; ++r) {
        if (r == col) continue;
        const double factor = m[r * (k + 1) + col] / d;
        for (int j = col; j <= k; ++j) m[r * (k + 1) + j] -= factor * m[col * (k + 1) + j];
      }
    }
    std::fill(c.begin(), c.end(), 0.0);
    int most_negative = -1;
    for (int a = 0; a < k; ++a) {
      const double d = m[a * (k + 1) + a];
      c[idx[a]] = d == 0 ? 0.0 : m[a * (k + 1) + k] / d / scale[a];
      if (c[idx[a]] < 0 && (most_negative < 0 || c[idx[a]] < c[most_negative])) most_negative = idx[a];
    }
    if (most_negative < 0) return c;
    free[most_negative] = false;
  }
  std::fill(c.begin(), c.end(), 0.0);
  return c;
}

}  // namespace

double CostModel::exact_seconds(std::int64_t batch, std::int64_t seq_len, std::int64_t head_dim, bool causal) const {
  return predict(*this, exact_work(batch, seq_len, head_dim, causal), exact_coefficients);
}

double CostModel::fast_seconds(std::int64_t batch, std::int64_t seq_len, std::int64_t head_dim,
                               std::int64_t features, bool causal) const {
  return predict(*this, fast_work(batch, seq_len, head_dim, features, causal), fast_coefficients);
}

double CostModel::chained_seconds(std::int64_t batch, std::int64_t seq_len, std::int64_t head_dim,
                                  std::int64_t features, bool causal) const {
  return fast_seconds(batch, seq_len, head_dim, features, causal) * as_double(head_dim) * chained_factor;
}

CostModel fit_cost_model(const std::vector<CostSample>& samples, int threads) {
  std::vector<std::vector<double>> exact_rows, fast_rows;
  std::vector<double> exact_t, fast_t;
  std::vector<const CostSample*> chained;
  for (const auto& s : samples) {
    LF_CHECK(s.seconds > 0 && std::isfinite(s.seconds), ErrorKind::bad_input, "cost sample with time ", s.seconds);
    if (s.chained) {
      chained.push_back(&s);
    } else if (s.features > 0) {
      fast_rows.push_back(fast_work(s.batch, s.seq_len, s.head_dim, s.features, s.causal));
      fast_t.push_back(s.seconds);
    } else {
      exact_rows.push_back(exact_work(s.batch, s.seq_len, s.head_dim, s.causal));
      exact_t.push_back(s.seconds);
    }
  }
  CostModel m;
  m.threads = threads;
  if (!exact_rows.empty()) {
    const auto c = fit_non_negative(exact_rows, exact_t, exact_terms);
    for (int i = 0; i < exact_terms; ++i) m.*exact_coefficients[i] = c[i];
  }
  if (!fast_rows.empty()) {
    const auto c = fit_non_negative(fast_rows, fast_t, fast_terms);
    for (int i = 0; i < fast_terms; ++i) m.*fast_coefficients[i] = c[i];
  }
  std::vector<double> ratios;
  for (const CostSample* s : chained) {
    const double fast = m.fast_seconds(s->batch, s->seq_len, s->head_dim, s->features, s->causal);
    if (fast > 0) ratios.push_back(s->seconds / (fast * as_double(s->head_dim)));
  }
  if (!ratios.empty()) {
    std::sort(ratios.begin(), ratios.end());
    m.chained_factor = ratios[ratios.size() / 2];
  }
  return m;
}

std::string default_cost_model_path() {
  if (const char* p = std::getenv("LORAFAST_COST_MODEL"); p && *p) return p;
  if (const char* p = std::getenv("XDG_CACHE_HOME"); p && *p) return std::string(p) + "/lorafast/cost_model.json";
  if (const char* p = std::getenv("HOME"); p && *p) return std::string(p) + "/.cache/lorafast/cost_model.json";
  return "";
}

CostModel parse_cost_model(const std::string& json_text, const std::string& origin) {
  const std::string where = "cost model " + origin;
  const auto j = parse_json(json_text, where);
  LF_CHECK(j.is_object(), ErrorKind::bad_input, where, ": not a JSON object; rerun lorafast calibrate");
  const auto read = [&](const char* key, double& out) {
    const std::string what = cat(where, ": '", key, "'");
    out = json_number(require_field(j, key, where), what);
    LF_CHECK(out >= 0, ErrorKind::bad_input, what, " = ", out, " is negative; rerun lorafast calibrate");
  };
  CostModel m;
  for (int i = 0; i < exact_terms; ++i) read(exact_keys[i], m.*exact_coefficients[i]);
  for (int i = 0; i < fast_terms; ++i) read(fast_keys[i], m.*fast_coefficients[i]);
  read("chained_factor", m.chained_factor);
  m.threads = static_cast<int>(json_integer(require_field(j, "threads", where), 0, 1 << 16, cat(where, ": 'threads'")));
  return m;
}

CostModel load_cost_model(const std::string& path) {
  if (path.empty() || !std::filesystem::exists(path)) return CostModel{};
  return parse_cost_model(read_text_file(path, max_cost_model_bytes), path);
}

void save_cost_model(const CostModel& model, const std::string& path) {
  nlohmann::json j;
  for (int i = 0; i < exact_terms; ++i) j[exact_keys[i]] = model.*exact_coefficients[i];
  for (int i = 0; i < fast_terms; ++i) j[fast_keys[i]] = model.*fast_coefficients[i];
  j["chained_factor"] = model.chained_factor;
  j["threads"] = model.threads;
  j["causal_chunk"] = causal_chunk;
  const auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir);
  write_file_atomically(path, j.dump(2) + "\n");
}

}  // namespace lorafast
