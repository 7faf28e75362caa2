// Per-head method choice: the certificate (certificate.hpp) says which degree meets
// --eps, the cost model says whether that is cheaper than exact attention.
#include "lorafast/dispatch.hpp"

#include <cmath>
#include <cstdio>
#include <limits>

#include "lorafast/error.hpp"
#include "lorafast/features.hpp"

namespace lorafast {
namespace {

constexpr double infinity = std::numeric_limits<double>::infinity();
constexpr std::int64_t saturated = std::numeric_limits<std::int64_t>::max();

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3g", v);
  return text;
}

}  // namespace

std::string duration_text(double s) {
  if (!std::isfinite(s)) return "inf";
  char text[32];
  if (s < 1e-3)
    std::snprintf(text, sizeof text, "%.3g us", s * 1e6);
  else if (s < 1)
    std::snprintf(text, sizeof text, "%.3g ms", s * 1e3);
  else
    std::snprintf(text, sizeof text, "%.3g s", s);
  return text;
}

namespace {

// C(E+g, g), saturating at INT64_MAX so that reasons can still name the degree.
std::int64_t feature_count(std::int64_t head_dim, int degree) {
  try {
    return taylor_feature_count(head_dim, degree, saturated);
  } catch (const Error&) {
    return saturated;
  }
}

// "F=495", or "F > 9.2e18" when C(E+g, g) saturated.
std::string features_text(std::int64_t f) { return f == saturated ? std::string("F > 9.2e18") : cat("F=", f); }

// What an approximate method (fast or chained) would need for one head.
struct Candidate {
  Method method = Method::fast;
  int degree = -1;
  std::int64_t features = -1;
  double error = infinity;           // probability_error_bound(eta): P~ entries
  double gradient_bound = infinity;  // gradient_error_bound(G, g, route)
  double seconds = infinity;
  bool certified = false;  // gradient_bound <= eps
  bool forced = false;     // the degree came from --degree
};

// The request with the shape it is for: what the helpers below read.
struct Dispatch : AttentionRequest, AttentionShape {};

GradientRoute route_of(Method m) { return m == Method::chained ? GradientRoute::chained : GradientRoute::fast; }

Candidate candidate(const HeadScores& head, const Dispatch& r, Method approx) {
  Candidate c;
  c.method = approx;
  c.forced = r.degree.has_value();
  c.degree = c.forced ? *r.degree : degree_for(head.score_bound, r.eps, route_of(approx));
  if (c.degree < 0) return c;
  c.features = feature_count(r.head_dim, c.degree);
  c.seconds = approx == Method::chained ? r.cost.chained_seconds(r.batch, r.seq_len, r.head_dim, c.features, r.causal)
                                        : r.cost.fast_seconds(r.batch, r.seq_len, r.head_dim, c.features, r.causal);
  // Over the memory cap the method cannot run: skip the certificate (whose cost grows
  // with a forced degree) and leave it uncertified.
  if (c.features > r.max_features) return c;
  c.error = probability_error_bound(taylor_relative_error(head.score_bound, c.degree));
  c.gradient_bound = gradient_error_bound(head.score_bound, c.degree, route_of(approx));
  c.certified = c.gradient_bound <= r.eps;
  return c;
}

std::string needs(const HeadScores& head, const Candidate& c) {
  return cat("G=", number(head.score_bound), c.forced ? " with forced degree " : " needs degree ", c.degree, " (",
             features_text(c.features), ")");
}

std::string certified_text(const Candidate& c, double eps) {
  return cat("certified P error ", number(c.error), ", gradient bound ", number(c.gradient_bound), " <= eps ",
             number(eps));
}

// The surrogates' prefix states run over every earlier key: they cannot skip keys.
constexpr const char* mask_text = "the sliding-window or document mask";

void run(const Candidate& c, HeadDecision& d) {
  d.method = c.method;
  d.error_bound = c.error;
  d.gradient_bound = c.gradient_bound;
}

// What a reason choosing fast or chained adds under bf16 products.
std::string precision_text(const Dispatch& r) {
  return r.bf16_products ? "; computes in f32 (only the exact kernels multiply in bf16)" : "";
}

// --method fast|chained: run it, or refuse with the method that can.
void decide_requested(std::int64_t h, const HeadScores& head, const Dispatch& r, const Candidate& c,
                      HeadDecision& d) {
  const std::string name = method_name(r.method);
  LF_CHECK(!r.masked, ErrorKind::cannot_meet, "head ", h, ": `method` ", name, " cannot honour ", mask_text,
           "; `method` exact can");
  LF_CHECK(c.degree >= 0, ErrorKind::cannot_meet, "head ", h, ": `method` ", name, " cannot certify `eps` ",
           number(r.eps), ": score bound G=", number(head.score_bound), " needs a degree above ",
           max_certified_degree, "; `method` exact can");
  LF_CHECK(c.features <= r.max_features, ErrorKind::cannot_meet, "head ", h, ": `method` ", name, " ",
           needs(head, c), ", above the memory cap of ", r.max_features, " features; `method` exact can");
  run(c, d);
  d.reason = c.forced ? cat(name, ": requested; ", needs(head, c), ", certified P error ", number(c.error),
                            ", gradient bound ", number(c.gradient_bound), " (eps not enforced)", precision_text(r))
                      : cat(name, ": requested; ", needs(head, c), ", ", certified_text(c, r.eps), precision_text(r));
}

// --method auto: the cheapest of exact, fast and chained among those certified within
// eps. `c` is the cheapest certified approximate candidate, else the fast one.
void decide_automatic(const HeadScores& head, const Dispatch& r, const Candidate& c, HeadDecision& d) {
  const std::string name = method_name(c.method);
  const std::string costs =
      cat("predicted ", name, " ", duration_text(c.seconds), " vs exact ", duration_text(d.cost_exact));
  if (r.masked) {
    d.reason = cat("exact: only exact honours ", mask_text);
  } else if (c.degree < 0) {
    d.reason = cat("exact: G=", number(head.score_bound), " exceeds what degree <= ", max_certified_degree,
                   " can certify for eps ", number(r.eps));
  } else if (c.features > r.max_features) {
    d.reason = cat("exact: ", needs(head, c), ", above the memory cap of ", r.max_features, " features");
  } else if (!c.certified) {
    d.reason = cat("exact: ", needs(head, c), " certifies only a gradient bound of ", number(c.gradient_bound),
                   " > eps ", number(r.eps));
  } else if (c.seconds < d.cost_exact) {
    run(c, d);
    d.reason = cat(name, ": ", needs(head, c), ", ", certified_text(c, r.eps), ", ", costs, precision_text(r));
  } else {
    d.reason = cat("exact: ", needs(head, c), ", ", costs);
  }
}

// The approximate candidate a decision reports: the requested one, or for auto and
// exact the cheapest certified of fast and chained (the fast one when neither is).
Candidate reported_candidate(const HeadScores& head, const Dispatch& r) {
  if (r.method == Method::chained) return candidate(head, r, Method::chained);
  const Candidate fast = candidate(head, r, Method::fast);
  if (r.method == Method::fast) return fast;
  const Candidate chained = candidate(head, r, Method::chained);
  if (chained.certified && (!fast.certified || chained.seconds < fast.seconds)) return chained;
  return fast;
}

}  // namespace

std::string method_name(Method m) {
  switch (m) {
    case Method::exact: return "exact";
    case Method::fast: return "fast";
    case Method::chained: return "chained";
    case Method::automatic: return "auto";
  }
  return "auto";
}

std::optional<Method> find_method(std::string_view name) {
  for (Method m : all_methods)
    if (name == method_name(m)) return m;
  return std::nullopt;
}

Method parse_method(const std::string& name) {
  const auto method = find_method(name);
  LF_CHECK(method, ErrorKind::usage, "`method` ", quote(name), " is not one of exact, fast, chained, auto");
  return *method;
}

std::vector<HeadDecision> decide(const std::vector<HeadScores>& heads, const AttentionRequest& request,
                                 const AttentionShape& shape) {
  const Dispatch r{request, shape};
  LF_CHECK(r.eps > 0, ErrorKind::usage, "`eps` must be positive, got ", r.eps);
  LF_CHECK(!r.degree || (*r.degree >= 0 && *r.degree % 2 == 0), ErrorKind::bad_input, "`degree` ", *r.degree,
           " is odd or negative: odd Taylor degrees can make the softmax normaliser negative; use an even degree");
  LF_ASSERT(r.seq_len >= 1 && r.head_dim >= 1 && r.batch >= 1);
  std::vector<HeadDecision> out;
  for (std::size_t h = 0; h < heads.size(); ++h) {
    const HeadScores& head = heads[h];
    const Candidate c = reported_candidate(head, r);
    HeadDecision d;
    d.degree = c.degree;
    d.features = c.features;
    d.gamma_q = head.gamma_q;
    d.gamma_k = head.gamma_k;
    d.score_bound = head.score_bound;
    d.raw_score_bound = head.raw_score_bound;
    d.cost_exact = r.cost.exact_seconds(r.batch, r.seq_len, r.head_dim, r.causal);
    d.cost_fast = c.seconds;
    switch (r.method) {
      case Method::exact: d.reason = "exact: requested (method exact)"; break;
      case Method::fast:
      case Method::chained: decide_requested(static_cast<std::int64_t>(h), head, r, c, d); break;
      case Method::automatic: decide_automatic(head, r, c, d); break;
    }
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace lorafast
