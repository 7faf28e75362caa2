#include "ops/fast/scaled_head.hpp"

#include <algorithm>
#include <cmath>

#include "ops/exact/head_views.hpp"

namespace lorafast::fast {

template <class T>
ScaledHead<T> scale_head(const AttentionParams<T>& p, std::int64_t n, std::int64_t h, const SurrogateConfig& config) {
  const std::int64_t l = p.seq_len, e = p.head_dim;
  const std::int64_t g = p.kv_head(h);
  const auto q = exact::q_rows(p, n, h, 0, l), k = exact::k_rows(p, n, g, 0, l);
  // The same centre the certificate's score bound assumes.
  const std::vector<double> centre = config.center_keys ? mean_key(p, n, g, config.chunk) : std::vector<double>(e, 0.0);
  ScaledHead<T> out;
  out.q.resize(static_cast<std::size_t>(l * e));
  out.k.resize(static_cast<std::size_t>(l * e));
  double q_max = 0, k_max = 0;  // largest row norms
  for (std::int64_t i = 0; i < l; ++i) {
    double qn = 0, kn = 0;
    for (std::int64_t m = 0; m < e; ++m) {
      const double kc = static_cast<double>(k(i, m)) - centre[m];
      out.k[i * e + m] = static_cast<T>(kc);
      qn += static_cast<double>(q(i, m)) * q(i, m);
      kn += kc * kc;
    }
    q_max = std::max(q_max, std::sqrt(qn));
    k_max = std::max(k_max, std::sqrt(kn));
  }
  // t^2 = max|k - c| / max|q| makes both scaled maxima sqrt(G); the surrogate depends
  // only on q'.k', so t never changes the result, only the features' dynamic range.
  const double t = q_max > 0 && k_max > 0 ? std::sqrt(k_max / q_max) : 1.0;
  const double root_beta = std::sqrt(p.scale);
  out.q_factor = static_cast<T>(root_beta * t);
  out.k_factor = static_cast<T>(root_beta / t);
  for (std::int64_t i = 0; i < l; ++i)
    for (std::int64_t m = 0; m < e; ++m) {
      out.q[i * e + m] = out.q_factor * q(i, m);
      out.k[i * e + m] *= out.k_factor;
    }
  return out;
}

template ScaledHead<float> scale_head(const AttentionParams<float>&, std::int64_t, std::int64_t, const SurrogateConfig&);
template ScaledHead<double> scale_head(const AttentionParams<double>&, std::int64_t, std::int64_t, const SurrogateConfig&);

}  // namespace lorafast::fast
