// Inverse frequencies as transformers' modeling_rope_utils computes them (there in
// float32, here in double): default 1 / theta^(2i/E); linear divides by factor;
// llama3 divides long wavelengths (> original / low_freq_factor) by factor, keeps
// short ones (< original / high_freq_factor) and interpolates in between.
#include "model/rope.hpp"

#include <cmath>
#include <numbers>

#include "lorafast/error.hpp"

namespace lorafast {

std::vector<double> rope_inv_freq(const RopeConfig& rope, std::int64_t head_dim) {
  std::vector<double> inv(static_cast<std::size_t>(head_dim / 2));
  for (std::size_t i = 0; i < inv.size(); ++i) {
    double f = 1.0 / std::pow(rope.theta, static_cast<double>(2 * i) / static_cast<double>(head_dim));
    if (rope.type == RopeConfig::Type::linear) f /= rope.factor;
    if (rope.type == RopeConfig::Type::llama3) {
      const double old_len = static_cast<double>(rope.original_max_positions);
      const double wavelen = 2 * std::numbers::pi / f;
      if (wavelen > old_len / rope.low_freq_factor) {
        f /= rope.factor;
      } else if (!(wavelen < old_len / rope.high_freq_factor)) {
        const double smooth = (old_len / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
        f = (1 - smooth) * f / rope.factor + smooth * f;
      }
    }
    inv[i] = f;
  }
  return inv;
}

template <class T>
RopeTable<T> make_rope_table(const RopeConfig& rope, std::int64_t head_dim, std::int64_t seq_len) {
  const auto inv = rope_inv_freq(rope, head_dim);
  RopeTable<T> table;
  table.seq_len = seq_len;
  table.half = head_dim / 2;
  table.cos.resize(static_cast<std::size_t>(seq_len * table.half));
  table.sin.resize(table.cos.size());
  for (std::int64_t t = 0; t < seq_len; ++t)
    for (std::int64_t i = 0; i < table.half; ++i) {
      const double angle = static_cast<double>(t) * inv[static_cast<std::size_t>(i)];
      table.cos[static_cast<std::size_t>(t * table.half + i)] = static_cast<T>(std::cos(angle));
      table.sin[static_cast<std::size_t>(t * table.half + i)] = static_cast<T>(std::sin(angle));
    }
  return table;
}

namespace {

// Rotates every head of every row by +angle (sign 1) or -angle (sign -1).
template <class T>
void rotate(const RopeParams<T>& p, T sign) {
  const std::int64_t half = p.table->half, e = 2 * half, width = p.heads * e;
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < p.rows; ++r) {
    const std::int64_t t = p.positions != nullptr ? p.positions[r] : r % p.table->seq_len;
    const T* c = p.table->cos.data() + t * half;
    const T* s = p.table->sin.data() + t * half;
    for (std::int64_t h = 0; h < p.heads; ++h) {
      T* x = p.x + r * width + h * e;
      for (std::int64_t i = 0; i < half; ++i) {
        const T x1 = x[i], x2 = x[i + half], sn = sign * s[i];
        x[i] = x1 * c[i] - x2 * sn;
        x[i + half] = x2 * c[i] + x1 * sn;
      }
    }
  }
}

}  // namespace

template <class T>
void rope_fwd(const RopeParams<T>& p) {
  rotate(p, T(1));
}

template <class T>
void rope_bwd(const RopeParams<T>& p) {
  rotate(p, T(-1));
}

template RopeTable<float> make_rope_table<float>(const RopeConfig&, std::int64_t, std::int64_t);
template RopeTable<double> make_rope_table<double>(const RopeConfig&, std::int64_t, std::int64_t);
template void rope_fwd<float>(const RopeParams<float>&);
template void rope_fwd<double>(const RopeParams<double>&);
template void rope_bwd<float>(const RopeParams<float>&);
template void rope_bwd<double>(const RopeParams<double>&);

}  // namespace lorafast
