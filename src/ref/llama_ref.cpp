#include <cmath>

#include "ref/llama_reference.hpp"

namespace lorafast::ref {

std::vector<double> rms_norm(const std::vector<double>& x, const std::vector<double>& weight, std::int64_t dim,
                             double eps) {
  std::vector<double> y(x.size());
  const auto d = static_cast<std::size_t>(dim);
  for (std::size_t r = 0; r < x.size() / d; ++r) {
    double mean_sq = 0;
    for (std::size_t c = 0; c < d; ++c) mean_sq += x[r * d + c] * x[r * d + c] / static_cast<double>(d);
    for (std::size_t c = 0; c < d; ++c) y[r * d + c] = weight[c] * (x[r * d + c] / std::sqrt(mean_sq + eps));
  }
  return y;
}

std::vector<double> rope(const std::vector<double>& x, const RopeConfig& config, std::int64_t heads,
                         std::int64_t head_dim, std::int64_t seq_len) {
  const auto inv_freq = rope_inv_freq(config, head_dim);
  const auto e = static_cast<std::size_t>(head_dim), half = e / 2, width = e * static_cast<std::size_t>(heads);
  std::vector<double> y(x.size());
  for (std::size_t r = 0; r < x.size() / width; ++r) {
    const double t = static_cast<double>(r % static_cast<std::size_t>(seq_len));
    std::vector<double> cos(e), sin(e);  // emb = cat(freqs, freqs)
    for (std::size_t i = 0; i < e; ++i) {
      cos[i] = std::cos(t * inv_freq[i % half]);
      sin[i] = std::sin(t * inv_freq[i % half]);
    }
    for (std::size_t h = 0; h < static_cast<std::size_t>(heads); ++h) {
      const double* head = x.data() + r * width + h * e;
      std::vector<double> rotated(e);  // rotate_half: cat(-x2, x1)
      for (std::size_t i = 0; i < half; ++i) {
        rotated[i] = -head[i + half];
        rotated[i + half] = head[i];
      }
      for (std::size_t i = 0; i < e; ++i) y[r * width + h * e + i] = head[i] * cos[i] + rotated[i] * sin[i];
    }
  }
  return y;
}

std::vector<double> swiglu(const std::vector<double>& gate, const std::vector<double>& up) {
  std::vector<double> h(gate.size());
  for (std::size_t i = 0; i < gate.size(); ++i) h[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
  return h;
}

}  // namespace lorafast::ref
