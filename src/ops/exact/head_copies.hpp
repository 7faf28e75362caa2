// Per-(sequence, head) copies of K or V in the layouts the tile GEMMs read fastest,
// made once per call (O(L E) per head, against O(L^2 E) of GEMMs):
//  - transposed, [E, L]: the right operand of S = Q K^T and dP = dO V^T;
//  - rows, [L, E]: the right operand of P V and dS K.
// Both have a row stride of an odd number of cache lines (padded_ld): the tile GEMMs
// walk a 16- or 64-column panel of the right operand down all its rows for every six
// rows of the result, and rows an even number of lines apart (E = 64 is four; the
// [N, L, D] input puts one head's rows D apart; L = 4096 puts the transposed rows
// 16 KiB apart) fall in a few L1 sets and are read from L2 again each time. On a
// Zen 3 core with AVX2 the three tile shapes of bench/tile_gemm.cpp ran at 85, 84
// and 85 GFLOP/s with unpadded rows and at 93, 88 and 88 padded (OpenBLAS: 83-88).
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
    const bool transposed = layout == HeadLayout::transposed;
    ld_ = padded_ld<T>(transposed ? p.seq_len : p.head_dim);
    data_ = Scratch<T>(static_cast<std::size_t>(p.batch * heads_ * per_head()));
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
      T* out = data_.data() + pair * per_head() + (transposed ? j0 : j0 * ld_);
      if (transposed) {
        for (std::int64_t c = 0; c < e_; ++c)
          for (std::int64_t r = 0; r < rows; ++r) out[c * ld_ + r] = in(r, c);
      } else {
        for (std::int64_t r = 0; r < rows; ++r) std::copy(in.row(r), in.row(r) + e_, out + r * ld_);
      }
    }
  }

  // Keys [j0, j0 + cols) of K/V head g of sequence n: [E, cols] transposed, [cols, E] rows.
  MatrixView<const T> view(std::int64_t n, std::int64_t g, std::int64_t j0, std::int64_t cols) const {
    const T* head = data_.data() + (n * heads_ + g) * per_head();
    if (layout_ == HeadLayout::transposed) return {head + j0, e_, cols, ld_};
    return {head + j0 * ld_, cols, e_, ld_};
  }

 private:
  // Elements of one head's copy: E rows of L (transposed) or L rows of E, ld_ apart.
  std::int64_t per_head() const { return (layout_ == HeadLayout::transposed ? e_ : len_) * ld_; }

  HeadLayout layout_;
  std::int64_t e_, heads_, len_, ld_ = 0;
  Scratch<T> data_;
};

// Elements of buf for packed() of `rows` rows of width e.
template <class T>
std::size_t packed_size(std::int64_t rows, std::int64_t e) {
  return static_cast<std::size_t>(rows * padded_ld<T>(e));
}

// The rows of m (a query block of one head, or its dO) copied into buf at the
// padded_ld stride: the right operand of dV += P^T dO and dK += dS^T Q, walked
// down like HeadLayout::rows.
template <class T>
MatrixView<const T> packed(MatrixView<const T> m, const Scratch<T>& buf) {
  const std::int64_t ld = padded_ld<T>(m.cols);
  for (std::int64_t r = 0; r < m.rows; ++r) std::copy(m.row(r), m.row(r) + m.cols, buf.data() + r * ld);
  return {buf.data(), m.rows, m.cols, ld};
}

}  // namespace lorafast::exact
