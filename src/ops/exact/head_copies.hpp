// Per-(sequence, head) copies of K or V in the layouts the tile GEMMs read fastest,
// made once per call (O(L E) per head, against O(L^2 E) of GEMMs):
//  - transposed, [E, L]: the right operand of S = Q K^T and dP = dO V^T;
//  - rows, [L, E] contiguous: the right operand of P V and dS K. Only copied when
//    several heads share the [N, L, D] input; there the rows of one head lie D apart,
//    all in the same few L1 sets, and those GEMMs re-read them for every six rows.
#pragma once

#include <omp.h>

#include <algorithm>
#include <vector>

#include "ops/exact/head_views.hpp"

namespace lorafast::exact {

enum class HeadLayout { transposed, rows };

template <class T>
class HeadCopies {
 public:
  // `src` is an [N, L, D] input of p; only the heads p runs are copied.
  HeadCopies(const T* src, const AttentionParams<T>& p, HeadLayout layout)
      : layout_(layout), e_(p.head_dim), heads_(p.heads), len_(p.seq_len) {
    if (layout == HeadLayout::rows && p.heads == 1) {  // already contiguous
      src_ = src;
      ld_ = p.head_dim;
      return;
    }
    const bool transposed = layout == HeadLayout::transposed;
    ld_ = transposed ? padded(p.seq_len) : p.head_dim;
    const std::int64_t per_head = transposed ? e_ * ld_ : len_ * e_;
    data_.resize(p.batch * p.heads * per_head);
    src_ = data_.data();
    constexpr std::int64_t chunk = 64;  // source rows per step: read in L1, written in runs
    const std::int64_t chunks = ceil_div(p.seq_len, chunk), d = p.model_dim();
    // Threads only for copies big enough to matter (a millisecond or more): every
    // parallel region ends in a barrier, which costs far more than a small copy when
    // the cores are shared with other work.
    const bool big = static_cast<std::int64_t>(data_.size()) >= (std::int64_t{1} << 20);
#pragma omp parallel for schedule(static) if (big)
    for (std::int64_t item = 0; item < p.batch * p.heads * chunks; ++item) {
      const std::int64_t pair = item / chunks, j0 = item % chunks * chunk;
      if (!p.runs(pair % p.heads)) continue;
      const std::int64_t rows = std::min(chunk, p.seq_len - j0);
      const T* in = src + (pair / p.heads * p.seq_len + j0) * d + pair % p.heads * e_;
      T* out = data_.data() + pair * per_head + (transposed ? j0 : j0 * e_);
      if (transposed) {
        for (std::int64_t c = 0; c < e_; ++c)
          for (std::int64_t r = 0; r < rows; ++r) out[c * ld_ + r] = in[r * d + c];
      } else {
        for (std::int64_t r = 0; r < rows; ++r) std::copy(in + r * d, in + r * d + e_, out + r * e_);
      }
    }
  }

  // Keys [j0, j0 + cols) of head h of sequence n: [E, cols] transposed, [cols, E] rows.
  MatrixView<const T> view(std::int64_t n, std::int64_t h, std::int64_t j0, std::int64_t cols) const {
    if (layout_ == HeadLayout::transposed) return {src_ + (n * heads_ + h) * e_ * ld_ + j0, e_, cols, ld_};
    if (!data_.empty()) return {src_ + ((n * heads_ + h) * len_ + j0) * e_, cols, e_, e_};
    return {src_ + (n * len_ + j0) * ld_, cols, e_, ld_};  // one head: the input itself
  }

 private:
  // Transposed row stride: a multiple of 64 bytes that is an odd number of cache
  // lines, so the E rows a GEMM walks down fall in different L1 sets instead of a few
  // (L = 4096 would otherwise put every row 16 KiB apart, all in the same sets).
  static std::int64_t padded(std::int64_t len) {
    const std::int64_t per_line = 64 / static_cast<std::int64_t>(sizeof(T));
    const std::int64_t lines = ceil_div(std::max<std::int64_t>(len, 1), per_line);
    return (lines | 1) * per_line;
  }

  HeadLayout layout_;
  std::int64_t e_, heads_, len_, ld_ = 0;
  const T* src_ = nullptr;
  std::vector<T> data_;
};

// The rows of m (a query block of one head), contiguous in buf when they are not
// already: same reason as HeadLayout::rows, the GEMMs re-read them for every six keys.
template <class T>
MatrixView<const T> packed(MatrixView<const T> m, std::vector<T>& buf) {
  if (m.ld == m.cols) return m;
  for (std::int64_t r = 0; r < m.rows; ++r) std::copy(m.row(r), m.row(r) + m.cols, buf.data() + r * m.cols);
  return {buf.data(), m.rows, m.cols, m.cols};
}

}  // namespace lorafast::exact
