#include "attention_log.hpp"

#include <algorithm>

#include "lorafast/error.hpp"

namespace lorafast::cli {
namespace {

constexpr const char* csv_header = "step,layer,head,method,degree,features,score_bound,gradient_bound,reason\n";

bool surrogate(const HeadDecision& d) { return d.method != Method::exact; }

// What must not change silently: each head's method and degree.
std::string decision_key(const std::vector<HeadDecision>& heads) {
  std::string key;
  for (const auto& d : heads) key += cat(method_name(d.method), surrogate(d) ? cat(d.degree) : "", ';');
  return key;
}

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3g", v);
  return text;
}

// "fast x3 (degree 6, F 924), exact x1"
std::string method_counts(const std::vector<HeadDecision>& heads) {
  std::string text;
  for (Method m : {Method::exact, Method::fast, Method::chained}) {
    std::int64_t count = 0;
    int lo = 0, hi = 0;
    std::int64_t features = 0;
    for (const auto& d : heads) {
      if (d.method != m) continue;
      lo = count == 0 ? d.degree : std::min(lo, d.degree);
      hi = count == 0 ? d.degree : std::max(hi, d.degree);
      features = std::max(features, d.features);
      ++count;
    }
    if (count == 0) continue;
    text += cat(text.empty() ? "" : ", ", method_name(m), " x", count);
    if (m != Method::exact)
      text += lo == hi ? cat(" (degree ", lo, ", F ", features, ")") : cat(" (degree ", lo, "..", hi, ", F <= ", features, ")");
  }
  return text;
}

std::string summary(std::int64_t step, std::size_t layer, const std::vector<HeadDecision>& heads) {
  const auto widest = std::max_element(heads.begin(), heads.end(), [](const auto& a, const auto& b) {
    return a.score_bound < b.score_bound;
  });
  const auto narrowest = std::min_element(heads.begin(), heads.end(), [](const auto& a, const auto& b) {
    return a.score_bound < b.score_bound;
  });
  return cat("attention layer ", layer, " @ step ", step, ": ", method_counts(heads), " | G ",
             number(narrowest->score_bound), "..", number(widest->score_bound), " | head ", widest - heads.begin(),
             ": ", widest->reason);
}

std::string csv_quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string row(std::int64_t step, std::size_t layer, std::size_t head, const HeadDecision& d) {
  const bool s = surrogate(d);
  return cat(step, ',', layer, ',', head, ',', method_name(d.method), ',', s ? cat(d.degree) : "", ',',
             s ? cat(d.features) : "", ',', number(d.score_bound), ',', s ? number(d.gradient_bound) : "", ',',
             csv_quoted(d.reason), '\n');
}

}  // namespace

// A complete row ends with the closing quote of its reason.
AttentionLog::AttentionLog(const std::filesystem::path& path, std::int64_t resume_step)
    : csv_(path, csv_header, resume_step, [](const std::string& row) { return !row.empty() && row.back() == '"'; }) {}

std::vector<std::string> AttentionLog::record(std::int64_t step, const GptAttentionPlan& plan) {
  decisions_.resize(plan.size());
  std::vector<std::string> lines;
  std::string rows;
  for (std::size_t layer = 0; layer < plan.size(); ++layer) {
    const auto& heads = plan[layer];
    std::string key = decision_key(heads);
    if (heads.empty() || key == decisions_[layer]) continue;
    decisions_[layer] = std::move(key);
    lines.push_back(summary(step, layer, heads));
    for (std::size_t h = 0; h < heads.size(); ++h) rows += row(step, layer, h, heads[h]);
  }
  csv_.append(rows);
  return lines;
}

}  // namespace lorafast::cli
