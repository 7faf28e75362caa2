// The Taylor error certificate (SPEC.md §3.1).
//
// Why the supremum sits at the ends of [-G, G]: with f(t) = T_g(t) e^{-t},
//   f'(t) = (T_g'(t) - T_g(t)) e^{-t} = (T_{g-1}(t) - T_g(t)) e^{-t} = -t^g / g! e^{-t}.
// For even g, f' <= 0: f decreases on R through f(0) = 1. For odd g, f rises up to
// f(0) = 1 and falls after it. Either way |f - 1| on [-G, G] is largest at an end:
// sup = max(r(G), r(-G)) with
//   r(G)  = 1 - f(G)    = e^{-G} sum_{j>g} G^j / j!           (a Poisson upper tail)
//   r(-G) = |f(-G) - 1| = e^{G} |sum_{j>g} (-G)^j / j!|        (an alternating tail)
// Both are evaluated in long double without catastrophic cancellation (see each
// branch), then rounded up so the result is an upper bound.
#include "lorafast/certificate.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "lorafast/error.hpp"

namespace lorafast {
namespace {

using Real = long double;
constexpr double infinity = std::numeric_limits<double>::infinity();

// The branches below evaluate to within 2e-14 relative (long double terms, bounded
// cancellation; checked against 700-digit arithmetic for g <= 500, G <= 600). Rounding
// the result up by a much larger margin keeps it an upper bound at no practical cost.
constexpr double round_up = 1.0 + 1e-12;
// A tail sum stops once a term no longer moves the sum in long double.
constexpr Real negligible = 1e-24L;

// The terms scale * G^j / j! for j = 0, 1, ..., by the recurrence t_j = t_{j-1} G / j:
// one rounding per term (j ulps of long double after j terms, far inside 2e-14 for
// the few hundred terms any sum here takes), where exp and lgamma per term made the
// per-head planning cost ~0.2 ms. exp(±G) in long double is finite for G < 11356;
// beyond, the first term is 0 or inf, as the sums' limits are.
class PoissonTerms {
 public:
  PoissonTerms(Real g_bound, Real scale) : g_(g_bound), term_(scale) {}
  int index() const { return j_; }
  Real term() const { return term_; }
  void next() { term_ *= g_ / static_cast<Real>(++j_); }

 private:
  Real g_;
  Real term_;
  int j_ = 0;
};

// r(G) = 1 - e^{-G} T_g(G).
Real right_end_error(Real g_bound, int degree) {
  PoissonTerms t(g_bound, std::exp(-g_bound));
  Real head = t.term();  // e^{-G} T_g(G), a Poisson CDF in [0, 1]
  while (t.index() < degree) t.next(), head += t.term();
  // While the CDF is below 1/2, 1 - head loses at most one bit.
  if (head < 0.5L) return 1 - head;
  // Otherwise the Poisson median (>= G - ln 2) is <= g, so G < g + 1 and the tail's
  // terms fall by G / (j + 1) < 1: sum them directly, all positive.
  Real tail = 0;
  do {
    t.next();
    tail += t.term();
  } while (t.term() > negligible * tail && t.index() <= degree + 100000);
  return tail;
}

// r(-G) = |e^{G} T_g(-G) - 1| (the sign is that of (-1)^g).
Real left_end_error(Real g_bound, int degree) {
  PoissonTerms t(g_bound, std::exp(g_bound));  // e^{G} G^j / j!, signed (-1)^j below
  auto signed_term = [&] { return t.index() % 2 == 0 ? t.term() : -t.term(); };
  if (g_bound < Real(degree + 2)) {
    // Alternating tail whose |terms| fall from the first on (ratio G / (j + 1) < 1):
    // partial sums bracket the limit, so stopping at a negligible term is safe, and
    // the sum keeps a fixed share of the first term (no catastrophic cancellation).
    while (t.index() < degree) t.next();
    Real tail = 0;
    do {
      t.next();
      tail += signed_term();
    } while (std::isfinite(tail) && t.term() > negligible * std::abs(tail));
    return std::abs(tail);
  }
  // G >= g + 2: the terms of T_g(-G) grow in size up to the last, t_g, so
  // |T_g(-G)| >= t_g (1 - g/G) >= t_g 2/(g+2) while sum |terms| <= t_g (g+2)/2:
  // cancellation loses at most a factor ((g+2)/2)^2. The result is well above 1 here.
  Real sum = 0;
  for (;; t.next()) {
    if (!std::isfinite(t.term())) return t.term();  // overflow: the error is astronomically large
    sum += signed_term();
    if (t.index() == degree) break;
  }
  return std::abs(sum - 1);
}

}  // namespace

double taylor_relative_error(double score_bound, int degree) {
  LF_CHECK(degree >= 0, ErrorKind::usage, "Taylor degree ", degree, " must be non-negative for the certificate");
  LF_CHECK(!(score_bound < 0), ErrorKind::usage, "score bound ", score_bound, " must be non-negative");
  if (score_bound == 0) return 0.0;
  if (!std::isfinite(score_bound)) return infinity;
  const Real g = score_bound;
  const Real right = right_end_error(g, degree), left = left_end_error(g, degree);
  if (std::isnan(right) || std::isnan(left)) return infinity;
  const Real worst = std::max(right, left);
  if (!std::isfinite(worst) || worst > static_cast<Real>(std::numeric_limits<double>::max())) return infinity;
  return static_cast<double>(worst) * round_up;
}

double lagrange_error_bound(double score_bound, int degree) {
  LF_CHECK(degree >= 0 && !(score_bound < 0), ErrorKind::usage, "lagrange_error_bound(", score_bound, ", ", degree,
           "): needs G >= 0 and g >= 0");
  if (score_bound == 0) return 0.0;
  const Real g = score_bound;
  const Real log_bound = (degree + 1) * std::log(g) + g - std::lgamma(static_cast<Real>(degree) + 2);
  const Real bound = std::exp(log_bound);
  return bound > static_cast<Real>(std::numeric_limits<double>::max()) ? infinity : static_cast<double>(bound);
}

double probability_error_bound(double eta) {
  if (!(eta < 1.0)) return infinity;  // also NaN
  return 2.0 * eta / (1.0 - eta);
}

double gradient_error_bound(double score_bound, int degree, GradientRoute route) {
  LF_CHECK(degree >= 0 && degree % 2 == 0, ErrorKind::usage, "surrogate degree ", degree, " must be even");
  const double eta = taylor_relative_error(score_bound, degree);
  const double weights = probability_error_bound(eta);
  if (route == GradientRoute::chained) return weights;
  if (!(eta < 1.0)) return infinity;
  // T_0' = 0: a degree-0 fast gradient drops the score term entirely (relative error 1).
  const double derivative_eta = degree == 0 ? 1.0 : taylor_relative_error(score_bound, degree - 1);
  const double derivative = (derivative_eta + eta) / (1.0 - eta);
  return std::max(weights, derivative);
}

int degree_for(double score_bound, double eps, GradientRoute route) {
  LF_CHECK(eps > 0, ErrorKind::usage, "`eps` must be positive, got ", eps);
  for (int g = 2; g <= max_certified_degree; g += 2)
    if (gradient_error_bound(score_bound, g, route) <= eps) return g;
  return -1;
}

}  // namespace lorafast
