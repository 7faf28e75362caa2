// The per-head score bound of SPEC.md §3.1 in O(L * E):
//   G = beta * max_i |q_i|_2 * max_j |k_j - c|_2  >=  |beta q_i.(k_j - c)|  (Cauchy-Schwarz),
// c the centre of the (sequence, head): its mean key, or when causal the mean of its
// first chunk's keys (see centred_keys). Subtracting beta q_i.c shifts row i of S by a
// constant, which softmax ignores (with the causal mask too: every kept entry of the
// row moves by the same amount), so the fast path may work with centred keys.
#include <algorithm>
#include <cmath>

#include "lorafast/certificate.hpp"
#include "lorafast/error.hpp"
#include "ops/exact/head_views.hpp"

namespace lorafast {
namespace {

// Norms are accumulated in double: each carries a relative rounding error below
// (E + 2) u with u = 1.1e-16; inflating G by 1e-9 covers it for any E below 10^6.
constexpr double rounding_margin = 1.0 + 1e-9;

}  // namespace

template <class T>
HeadScores measure_head(const AttentionParams<T>& params, std::int64_t n, std::int64_t h, std::int64_t chunk) {
  const AttentionParams<T> p = checked(params, AttentionUse::scores);
  LF_CHECK(n >= 0 && n < p.batch && h >= 0 && h < p.heads, ErrorKind::usage, "attention: sequence ", n,
           " or head ", h, " out of range");
  const std::int64_t e = p.head_dim, g = p.kv_head(h);
  const std::vector<double> c = mean_key(p, n, g, chunk);
  const auto qs = exact::q_rows(p, n, h, 0, p.seq_len);
  const auto ks = exact::k_rows(p, n, g, 0, p.seq_len);
  HeadScores s;
  double max_q2 = 0, max_k2 = 0, max_centred_k2 = 0;  // squared row norms
  for (std::int64_t i = 0; i < p.seq_len; ++i) {
    const T* q = qs.row(i);
    const T* k = ks.row(i);
    double q2 = 0, k2 = 0, centred_k2 = 0, gamma_q = s.gamma_q, gamma_k = s.gamma_k;
    // Vectorized: any summation order keeps the rounding margin above.
#pragma omp simd reduction(+ : q2, k2, centred_k2) reduction(max : gamma_q, gamma_k)
    for (std::int64_t m = 0; m < e; ++m) {
      const double qm = q[m], km = k[m], dm = km - c[m];
      gamma_q = std::max(gamma_q, std::abs(qm));
      gamma_k = std::max(gamma_k, std::abs(km));
      q2 += qm * qm;
      k2 += km * km;
      centred_k2 += dm * dm;
    }
    s.gamma_q = gamma_q;
    s.gamma_k = gamma_k;
    max_q2 = std::max(max_q2, q2);
    max_k2 = std::max(max_k2, k2);
    max_centred_k2 = std::max(max_centred_k2, centred_k2);
  }
  const double beta_q = p.scale * std::sqrt(max_q2) * rounding_margin;
  s.score_bound = beta_q * std::sqrt(max_centred_k2);
  s.raw_score_bound = beta_q * std::sqrt(max_k2);
  return s;
}

template <class T>
std::vector<HeadScores> measure_heads(const AttentionParams<T>& p, std::int64_t chunk) {
  std::vector<HeadScores> heads(static_cast<std::size_t>(p.heads));
  for (std::int64_t h = 0; h < p.heads; ++h)
    for (std::int64_t n = 0; n < p.batch; ++n) {
      const HeadScores s = measure_head(p, n, h, chunk);
      HeadScores& out = heads[static_cast<std::size_t>(h)];
      out.gamma_q = std::max(out.gamma_q, s.gamma_q);
      out.gamma_k = std::max(out.gamma_k, s.gamma_k);
      out.score_bound = std::max(out.score_bound, s.score_bound);
      out.raw_score_bound = std::max(out.raw_score_bound, s.raw_score_bound);
    }
  return heads;
}

#define LORAFAST_INSTANTIATE(T)                                                                            \
  template HeadScores measure_head(const AttentionParams<T>&, std::int64_t, std::int64_t, std::int64_t);      \
  template std::vector<HeadScores> measure_heads(const AttentionParams<T>&, std::int64_t);
LORAFAST_INSTANTIATE(float)
LORAFAST_INSTANTIATE(double)
#undef LORAFAST_INSTANTIATE

}  // namespace lorafast
