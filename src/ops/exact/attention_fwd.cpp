// Tiled exact attention forward (FlashAttention-2 on the CPU): each work item is a
// block of query rows of one head of one sequence; it streams key/value tiles,
// keeps the online softmax state and writes O and the row log-sum-exp.
#include <omp.h>

#include <cmath>
#include <limits>

#include "kernels/tile_gemm.hpp"
#include "lorafast/error.hpp"
#include "kernels/tile_ops.hpp"
#include "ops/exact/head_views.hpp"
#include "ops/exact/head_copies.hpp"

namespace lorafast {

using kernels::tile_gemm;
using kernels::Op;

template <class T>
void attention_fwd(const AttentionParams<T>& params) {
  using namespace exact;
  const AttentionParams<T> p = checked(params, AttentionUse::forward);
  LF_CHECK(p.lse != nullptr, ErrorKind::usage, "attention: tensor lse is null");
  const std::int64_t row_blocks = ceil_div(p.seq_len, block_rows);
  const std::int64_t items = p.batch * p.heads * row_blocks;
  const T scale = static_cast<T>(p.scale);
  const HeadCopies<T> k_t(p.k, p.k_strides, p, HeadLayout::transposed);
  const HeadCopies<T> v_copy(p.v, p.v_strides, p, HeadLayout::rows);
#pragma omp parallel
  {
    const std::size_t tile = block_rows * block_cols, rows_e = block_rows * p.head_dim;
    const Scratch<T> s(tile), acc(rows_e), m(block_rows), l(block_rows), q_buf(packed_size<T>(block_rows, p.head_dim));
    // Static schedule: deterministic; back-and-forth order balances causal row blocks.
#pragma omp for schedule(static, 1)
    for (std::int64_t i = 0; i < items; ++i) {
      const std::int64_t item = back_and_forth(i, omp_get_num_threads(), items);
      const std::int64_t n = item / (p.heads * row_blocks), h = item / row_blocks % p.heads;
      if (!p.runs(h)) continue;
      const std::int64_t i0 = item % row_blocks * block_rows, rows = std::min(block_rows, p.seq_len - i0);
      const std::int64_t g = p.kv_head(h);
      const auto q = packed(q_rows(p, n, h, i0, rows), q_buf);
      std::fill(acc.begin(), acc.end(), T(0));
      std::fill(m.begin(), m.end(), -std::numeric_limits<T>::infinity());
      std::fill(l.begin(), l.end(), T(0));
      const MatrixView<T> acc_view{acc.data(), rows, p.head_dim, p.head_dim};
      const std::int64_t keys = visible_keys(p, i0, rows);
      for (std::int64_t j0 = 0; j0 < keys; j0 += block_cols) {
        const std::int64_t cols = std::min(block_cols, keys - j0);
        const MatrixView<T> tile{s.data(), rows, cols, block_cols};
        tile_gemm(Op::none, Op::none, scale, q, k_t.view(n, g, j0, cols), T(0), tile);
        if (tile_needs_mask(p.causal, i0, j0, cols)) kernels::mask_future(s.data(), block_cols, rows, cols, i0, j0);
        kernels::online_softmax_step(s.data(), block_cols, rows, cols, m.data(), l.data(), acc.data(),
                                     p.head_dim, p.head_dim);
        tile_gemm(Op::none, Op::none, T(1), tile, v_copy.view(n, g, j0, cols), T(1), acc_view);
      }
      const auto o = o_rows(p, n, h, i0, rows);
      T* lse = p.lse + (n * p.heads + h) * p.seq_len + i0;
      for (std::int64_t r = 0; r < rows; ++r) {
        const T inv = T(1) / l[r];
        for (std::int64_t c = 0; c < p.head_dim; ++c) o(r, c) = acc[r * p.head_dim + c] * inv;
        lse[r] = m[r] + std::log(l[r]);
      }
    }
  }
}

template void attention_fwd<float>(const AttentionParams<float>&);
template void attention_fwd<double>(const AttentionParams<double>&);

}  // namespace lorafast
