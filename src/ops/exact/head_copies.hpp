// Per-(sequence, head) copies of K or V in the layouts the tile GEMMs read fastest,
// made once per call (O(L E) per head, against O(L^2 E) of GEMMs):
//  - transposed, [E, L]: the right operand of S = Q K^T and dP = dO V^T;
//  - rows, [L, E] contiguous: the right operand of P V and dS K. Only copied when
//    the input's rows are not contiguous (several heads share the [N, L, D] input:
//    there the rows of one head lie D apart, all in the same few L1 sets, and those
//    GEMMs re-read them for every six rows).
#pragma once

#include <omp.h>

#include <algorithm>

#include "core/scratch.hpp"
#include "ops/exact/head_views.hpp"

namespace lorafast::exact {

enum class HeadLayout { transposed, rows };

template <class T>
class HeadCopies {
 public:
  // `src` with strides `s` is a key-side input of p (k or v: kv_heads heads); only
  // the K/V heads some running query head reads are copied.
  HeadCopies(const T* src, const HeadStrides& s, const AttentionParams<T>& p, HeadLayout layout)
      : layout_(layout), e_(p.head_dim), heads_(p.kv_head_count()), len_(p.seq_len) {
    if (layout == HeadLayout::rows && s.row == p.head_dim) {  // already contiguous
      src_ = src;
      strides_ = s;
      return;
    }
    const bool transposed = layout == HeadLayout::transposed;
    ld_ = transposed ? padded(p.seq_len) : p.head_dim;
    const std::int64_t per_head = transposed ? e_ * ld_ : len_ * e_;
    data_ = Scratch<T>(static_cast<std::size_t>(p.batch * heads_ * per_head));
    src_ = data_.data();
    constexpr std::int64_t chunk = 64;  // source rows per step: read in L1, written in runs
    const std::int64_t chunks = ceil_div(p.seq_len, chunk);
    // Threads only for copies big enough to matter (a millisecond or more): every
    // parallel region ends in a barrier, which costs far more than a small copy when
    // the cores are shared with other work.
    const bool big = static_cast<std::int64_t>(data_.size()) >= (std::int64_t{1} << 20);
#pragma omp parallel for schedule(static) if (big)
    for (std::int64_t item = 0; item < p.batch * heads_ * chunks; ++item) {
      const std::int64_t pair = item / chunks, j0 = item % chunks * chunk;
      if (!p.runs_kv(pair % heads_)) continue;
      const std::int64_t rows = std::min(chunk, p.seq_len - j0);
      const auto in = head_rows(src, s, e_, pair / heads_, pair % heads_, j0, rows);
      T* out = data_.data() + pair * per_head + (transposed ? j0 : j0 * e_);
      if (transposed) {
        for (std::int64_t c = 0; c < e_; ++c)
          for (std::int64_t r = 0; r < rows; ++r) out[c * ld_ + r] = in(r, c);
      } else {
        for (std::int64_t r = 0; r < rows; ++r) std::copy(in.row(r), in.row(r) + e_, out + r * e_);
      }
    }
  }

  // Keys [j0, j0 + cols) of K/V head g of sequence n: [E, cols] transposed, [cols, E] rows.
  MatrixView<const T> view(std::int64_t n, std::int64_t g, std::int64_t j0, std::int64_t cols) const {
    if (layout_ == HeadLayout::transposed) return {src_ + (n * heads_ + g) * e_ * ld_ + j0, e_, cols, ld_};
    if (!data_.empty()) return {src_ + ((n * heads_ + g) * len_ + j0) * e_, cols, e_, e_};
    return head_rows(src_, strides_, e_, n, g, j0, cols);  // contiguous rows: the input itself
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
  HeadStrides strides_;  // of src_ when it is the input itself
  const T* src_ = nullptr;
  Scratch<T> data_;
};

// The rows of m (a query block of one head), contiguous in buf when they are not
// already: same reason as HeadLayout::rows, the GEMMs re-read them for every six keys.
template <class T>
MatrixView<const T> packed(MatrixView<const T> m, const Scratch<T>& buf) {
  if (m.ld == m.cols) return m;
  for (std::int64_t r = 0; r < m.rows; ++r) std::copy(m.row(r), m.row(r) + m.cols, buf.data() + r * m.cols);
  return {buf.data(), m.rows, m.cols, m.cols};
}

}  // namespace lorafast::exact
