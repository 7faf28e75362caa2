// K or V of every (sequence, head) transposed to [E, L]: the score GEMMs S = Q K^T and
// dP = dO V^T then read a row-major right operand, as kernels::tile_gemm wants, and the
// O(L E) copy is made once per call instead of once per query block.
#pragma once

#include <omp.h>

#include <vector>

#include "ops/exact/head_views.hpp"

namespace lorafast::exact {

template <class T>
class TransposedHeads {
 public:
  // `src` is an [N, L, D] input of p; only the heads p runs are copied.
  TransposedHeads(const T* src, const AttentionParams<T>& p)
      : e_(p.head_dim), heads_(p.heads), ld_(padded(p.seq_len)), data_(p.batch * p.heads * e_ * ld_) {
    constexpr std::int64_t chunk = 64;  // source rows per step: read in L1, written in runs
    const std::int64_t chunks = ceil_div(p.seq_len, chunk), d = p.model_dim();
#pragma omp parallel for schedule(static)
    for (std::int64_t item = 0; item < p.batch * p.heads * chunks; ++item) {
      const std::int64_t pair = item / chunks, j0 = item % chunks * chunk;
      if (!p.runs(pair % p.heads)) continue;
      const std::int64_t rows = std::min(chunk, p.seq_len - j0);
      const T* in = src + (pair / p.heads * p.seq_len + j0) * d + pair % p.heads * e_;
      T* out = data_.data() + pair * e_ * ld_ + j0;
      for (std::int64_t c = 0; c < e_; ++c)
        for (std::int64_t r = 0; r < rows; ++r) out[c * ld_ + r] = in[r * d + c];
    }
  }

  // Columns [j0, j0 + cols) of the [E, L] transpose of head h of sequence n.
  MatrixView<const T> view(std::int64_t n, std::int64_t h, std::int64_t j0, std::int64_t cols) const {
    return {data_.data() + (n * heads_ + h) * e_ * ld_ + j0, e_, cols, ld_};
  }

 private:
  // Row stride: a multiple of 64 bytes that is an odd number of cache lines, so the E
  // rows a GEMM walks down fall in different L1 sets instead of a few (L = 4096
  // would otherwise put every row 16 KiB apart, all in the same sets).
  static std::int64_t padded(std::int64_t len) {
    const std::int64_t per_line = 64 / static_cast<std::int64_t>(sizeof(T));
    const std::int64_t lines = ceil_div(std::max<std::int64_t>(len, 1), per_line);
    return (lines | 1) * per_line;
  }

  std::int64_t e_, heads_, ld_;
  std::vector<T> data_;
};

}  // namespace lorafast::exact
