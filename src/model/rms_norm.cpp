// Row sums are accumulated in double in both precisions (transformers computes the
// statistic in float32 at least, whatever the model's dtype).
#include "model/rms_norm.hpp"

#include <cmath>
#include <vector>

#include "kernels/column_split.hpp"

namespace lorafast {

namespace {

// The scale of column c.
template <class T>
T scale(const RmsNormParams<T>& p, std::int64_t c) {
  return p.plus_one ? T(1) + p.weight[c] : p.weight[c];
}

}  // namespace

template <class T>
void rms_norm_fwd(const RmsNormParams<T>& p) {
  const std::int64_t d = p.dim;
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < p.rows; ++r) {
    const T* x = p.x + r * d;
    double sq = 0;
    for (std::int64_t c = 0; c < d; ++c) sq += static_cast<double>(x[c]) * x[c];
    const double rstd = 1.0 / std::sqrt(sq / static_cast<double>(d) + p.eps);
    T* y = p.y + r * d;
    for (std::int64_t c = 0; c < d; ++c) y[c] = scale(p, c) * static_cast<T>(x[c] * rstd);
    p.rstd[r] = static_cast<T>(rstd);
  }
}

// With xhat = x rstd and g = d_y * scale:  d_x = rstd * (g - xhat * mean(g * xhat)),
// d_weight = sum_rows d_y * xhat (each thread owns a block of columns, rows in order).
template <class T>
void rms_norm_bwd(const RmsNormParams<T>& p) {
  const std::int64_t d = p.dim;
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < p.rows; ++r) {
    const T *x = p.x + r * d, *d_y = p.d_y + r * d;
    const T rstd = p.rstd[r];
    double sum_gx = 0;
    for (std::int64_t c = 0; c < d; ++c) sum_gx += static_cast<double>(d_y[c] * scale(p, c)) * (x[c] * rstd);
    const T mean_gx = static_cast<T>(sum_gx / static_cast<double>(d));
    T* d_x = p.d_x + r * d;
    for (std::int64_t c = 0; c < d; ++c) d_x[c] += rstd * (d_y[c] * scale(p, c) - x[c] * rstd * mean_gx);
  }
  if (p.d_weight == nullptr) return;
  kernels::for_column_blocks(d, [&](std::int64_t c0, std::int64_t c1) {
    std::vector<double> sum(static_cast<std::size_t>(c1 - c0), 0.0);
    for (std::int64_t r = 0; r < p.rows; ++r)
      for (std::int64_t c = c0; c < c1; ++c)
        sum[static_cast<std::size_t>(c - c0)] += p.d_y[r * d + c] * (p.x[r * d + c] * p.rstd[r]);
    for (std::int64_t c = c0; c < c1; ++c) p.d_weight[c] = static_cast<T>(sum[static_cast<std::size_t>(c - c0)]);
  });
}

template void rms_norm_fwd<float>(const RmsNormParams<float>&);
template void rms_norm_fwd<double>(const RmsNormParams<double>&);
template void rms_norm_bwd<float>(const RmsNormParams<float>&);
template void rms_norm_bwd<double>(const RmsNormParams<double>&);

}  // namespace lorafast
