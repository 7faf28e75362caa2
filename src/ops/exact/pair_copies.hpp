// Operands of the exact kernels' bf16 products (AttentionParams::bf16_products), in
// the layout of the bf16 dot-product instruction (kernels::PairTile): 32-bit words,
// each two bf16 values that are neighbours along the summed dimension, the low half
// first; a missing partner (an odd length) is 0. Two layouts of a [rows, cols] f32
// matrix M:
//  - pair rows, [rows, ceil(cols / 2)]: word (r, q) = (M(r, 2q), M(r, 2q + 1)), the
//    left operand A of a product summed over cols (Q, dO, P, dS);
//  - row pairs, [ceil(rows / 2), cols]: word (q, c) = (M(2q, c), M(2q + 1, c)), the
//    right operand B of a product summed over rows (V, K, dO, Q), or, read with
//    a_row = 1, the left operand of a transposed product (P^T, dS^T).
// Key-side inputs get a copy per (sequence, K/V head) once per call, as HeadCopies:
// K^T and V^T as pair rows of K and V viewed transposed (B of S = Q K^T, dP = dO V^T),
// V and K as row pairs (B of P V, dS K). Rows are padded_ld words apart (odd cache
// lines, head_copies.hpp says why).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "core/scratch.hpp"
#include "kernels/bf16_pairs.hpp"
#include "lorafast/bf16.hpp"
#include "ops/exact/head_views.hpp"

namespace lorafast::exact {

inline std::uint32_t bf16_pair(float lo, float hi) {
  return std::uint32_t{to_bf16(lo).bits} | std::uint32_t{to_bf16(hi).bits} << 16;
}

using kernels::to_pair_rows;
using kernels::to_row_pairs;

// Words a matrix of `rows` pair rows (cols values each) or of row pairs takes at the
// padded stride.
inline std::int64_t pair_rows_ld(std::int64_t cols) { return padded_ld<std::uint32_t>((cols + 1) / 2); }
inline std::int64_t row_pairs_ld(std::int64_t cols) { return padded_ld<std::uint32_t>(cols); }

// A right operand: row q of B at b + q * ldb.
struct PairOperand {
  const std::uint32_t* b = nullptr;
  std::int64_t ldb = 0;
};

enum class PairLayout { transposed, row_pairs };

// K or V of every (sequence, K/V head) some running query head reads: transposed
// (pair rows of the head's [E, L] transpose: ceil(E/2) rows of L words) or as row
// pairs (ceil(L/2) rows of E words).
class PairHeadCopies {
 public:
  PairHeadCopies(const float* src, const HeadStrides& s, const AttentionParams<float>& p, PairLayout layout)
      : layout_(layout), e_(p.head_dim), heads_(p.kv_head_count()), len_(p.seq_len) {
    const bool transposed = layout == PairLayout::transposed;
    ld_ = transposed ? padded_ld<std::uint32_t>(len_) : row_pairs_ld(e_);
    per_head_ = (transposed ? (e_ + 1) / 2 : (len_ + 1) / 2) * ld_;
    data_ = Scratch<std::uint32_t>(static_cast<std::size_t>(p.batch * heads_ * per_head_));
    constexpr std::int64_t chunk = 64;  // source rows per step (even: row pairs stay whole)
    const std::int64_t chunks = ceil_div(len_, chunk);
    const bool big = static_cast<std::int64_t>(data_.size()) >= (std::int64_t{1} << 19);
#pragma omp parallel for schedule(static) if (big)
    for (std::int64_t item = 0; item < p.batch * heads_ * chunks; ++item) {
      const std::int64_t pair = item / chunks, j0 = item % chunks * chunk;
      if (!p.runs_kv(pair % heads_)) continue;
      const std::int64_t rows = std::min(chunk, len_ - j0);
      const auto in = head_rows(src, s, e_, pair / heads_, pair % heads_, j0, rows);
      std::uint32_t* head = data_.data() + pair * per_head_;
      if (transposed) {
        const std::int64_t even = e_ & ~std::int64_t{1};
        for (std::int64_t c = 0; c < even; c += 2)
          for (std::int64_t r = 0; r < rows; ++r) head[c / 2 * ld_ + j0 + r] = bf16_pair(in(r, c), in(r, c + 1));
        if (e_ % 2)
          for (std::int64_t r = 0; r < rows; ++r) head[even / 2 * ld_ + j0 + r] = bf16_pair(in(r, even), 0.0f);
      } else {
        to_row_pairs(in, head + j0 / 2 * ld_, ld_);
      }
    }
  }

  // Keys [j0, ...) of K/V head g of sequence n as a right operand: transposed, the
  // columns from j0 on; row pairs, the rows from key j0 on (j0 even).
  PairOperand view(std::int64_t n, std::int64_t g, std::int64_t j0) const {
    const std::uint32_t* head = data_.data() + (n * heads_ + g) * per_head_;
    if (layout_ == PairLayout::transposed) return {head + j0, ld_};
    LF_ASSERT(j0 % 2 == 0);
    return {head + j0 / 2 * ld_, ld_};
  }

 private:
  PairLayout layout_;
  std::int64_t e_, heads_, len_, ld_ = 0, per_head_ = 0;
  Scratch<std::uint32_t> data_;
};

}  // namespace lorafast::exact
