// Row sums are accumulated in double in both precisions: D can be in the thousands,
// and the statistics feed every later layer.
#include "model/layer_norm.hpp"

#include <cmath>
#include <vector>

#include "kernels/column_split.hpp"

namespace lorafast {

template <class T>
void layer_norm_fwd(const LayerNormParams<T>& p) {
  const std::int64_t d = p.dim;
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < p.rows; ++r) {
    const T* x = p.x + r * d;
    double sum = 0;
    for (std::int64_t c = 0; c < d; ++c) sum += x[c];
    const double mean = sum / static_cast<double>(d);
    double sq = 0;
    for (std::int64_t c = 0; c < d; ++c) sq += (x[c] - mean) * (x[c] - mean);
    const double rstd = 1.0 / std::sqrt(sq / static_cast<double>(d) + p.eps);
    T* y = p.y + r * d;
    for (std::int64_t c = 0; c < d; ++c) y[c] = static_cast<T>((x[c] - mean) * rstd) * p.weight[c] + p.bias[c];
    p.mean[r] = static_cast<T>(mean);
    p.rstd[r] = static_cast<T>(rstd);
  }
}

namespace {

// d_weight = sum_rows d_y * xhat, d_bias = sum_rows d_y: each thread owns a block
// of columns and adds the rows in order (kernels/column_split.hpp), in double.
template <class T>
void layer_norm_param_grads(const LayerNormParams<T>& p) {
  const std::int64_t d = p.dim;
  kernels::for_column_blocks(d, [&](std::int64_t c0, std::int64_t c1) {
    std::vector<double> sum_w(static_cast<std::size_t>(c1 - c0), 0.0), sum_b(sum_w.size(), 0.0);
    for (std::int64_t r = 0; r < p.rows; ++r) {
      const T *x = p.x + r * d, *d_y = p.d_y + r * d;
      const T mean = p.mean[r], rstd = p.rstd[r];
      for (std::int64_t c = c0; c < c1; ++c) {
        sum_w[static_cast<std::size_t>(c - c0)] += d_y[c] * ((x[c] - mean) * rstd);
        sum_b[static_cast<std::size_t>(c - c0)] += d_y[c];
      }
    }
    for (std::int64_t c = c0; c < c1; ++c) {
      p.d_weight[c] = static_cast<T>(sum_w[static_cast<std::size_t>(c - c0)]);
      p.d_bias[c] = static_cast<T>(sum_b[static_cast<std::size_t>(c - c0)]);
    }
  });
}

}  // namespace

// With xhat = (x - mean) rstd and g = d_y * weight:
//   d_x = rstd * (g - mean(g) - xhat * mean(g * xhat)).
template <class T>
void layer_norm_bwd(const LayerNormParams<T>& p) {
  const std::int64_t d = p.dim;
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < p.rows; ++r) {
    const T *x = p.x + r * d, *d_y = p.d_y + r * d;
    const T mean = p.mean[r], rstd = p.rstd[r];
    double sum_g = 0, sum_gx = 0;
    for (std::int64_t c = 0; c < d; ++c) {
      const T g = d_y[c] * p.weight[c], xhat = (x[c] - mean) * rstd;
      sum_g += g;
      sum_gx += g * xhat;
    }
    const T mean_g = static_cast<T>(sum_g / static_cast<double>(d));
    const T mean_gx = static_cast<T>(sum_gx / static_cast<double>(d));
    T* d_x = p.d_x + r * d;
    for (std::int64_t c = 0; c < d; ++c) {
      const T g = d_y[c] * p.weight[c], xhat = (x[c] - mean) * rstd;
      d_x[c] += rstd * (g - mean_g - xhat * mean_gx);
    }
  }
  if (p.d_weight != nullptr) layer_norm_param_grads(p);
}

template void layer_norm_fwd<float>(const LayerNormParams<float>&);
template void layer_norm_fwd<double>(const LayerNormParams<double>&);
template void layer_norm_bwd<float>(const LayerNormParams<float>&);
template void layer_norm_bwd<double>(const LayerNormParams<double>&);

}  // namespace lorafast
