// Tiled exact attention forward (FlashAttention-2 on the CPU): each work item is a
// block of query rows of one head of one sequence; it streams key/value tiles,
// keeps the online softmax state and writes O and the row log-sum-exp.
#include <limits>
#include <type_traits>

#include "kernels/tile_gemm.hpp"
#include "lorafast/error.hpp"
#include "kernels/tile_ops.hpp"
#include "ops/exact/head_views.hpp"
#include "lorafast/bf16.hpp"
#include "ops/exact/attention_bf16.hpp"
#include "ops/exact/head_copies.hpp"

namespace lorafast {

using kernels::tile_gemm;
using kernels::Op;

template <class T>
void attention_fwd(const AttentionParams<T>& params) {
  using namespace exact;
  const AttentionParams<T> p = checked(params, AttentionUse::forward);
  LF_CHECK(p.lse != nullptr, ErrorKind::usage, "attention: tensor lse is null");
  if constexpr (std::is_same_v<T, float>)
    if (p.bf16_products && bf16_arithmetic()) return attention_fwd_bf16(p);
  const T scale = static_cast<T>(p.scale);
  const HeadCopies<T> k_t(p.k, p.k_strides, p, HeadLayout::transposed);
  const HeadCopies<T> v_copy(p.v, p.v_strides, p, HeadLayout::rows);
  struct Workspace {
    Scratch<T> s, acc, m, l, q;
  };
  const auto make_workspace = [&] {
    return Workspace{Scratch<T>(block_rows * block_cols), Scratch<T>(block_rows * p.head_dim), Scratch<T>(block_rows),
                     Scratch<T>(block_rows), Scratch<T>(packed_size<T>(block_rows, p.head_dim))};
  };
  for_each_query_block(p, make_workspace, [&](Workspace& ws, std::int64_t n, std::int64_t h, std::int64_t i0,
                                              std::int64_t rows) {
    const std::int64_t g = p.kv_head(h);
    const auto q = packed(q_rows(p, n, h, i0, rows), ws.q);
    std::fill(ws.acc.begin(), ws.acc.end(), T(0));
    std::fill(ws.m.begin(), ws.m.end(), -std::numeric_limits<T>::infinity());
    std::fill(ws.l.begin(), ws.l.end(), T(0));
    const MatrixView<T> acc_view{ws.acc.data(), rows, p.head_dim, p.head_dim};
    const BlockKeys keys(p, n, i0, rows);
    for (std::int64_t j0 = keys.first; j0 < keys.end; j0 += block_cols) {
      const std::int64_t cols = std::min(block_cols, keys.end - j0);
      const MatrixView<T> tile{ws.s.data(), rows, cols, block_cols};
      tile_gemm(Op::none, Op::none, scale, q, k_t.view(n, g, j0, cols), T(0), tile);
      if (keys.needs_mask(j0, cols))
        kernels::mask_outside(ws.s.data(), block_cols, rows, cols, j0, keys.lo.data(), keys.hi.data());
      kernels::online_softmax_step(ws.s.data(), block_cols, rows, cols, ws.m.data(), ws.l.data(), ws.acc.data(),
                                   p.head_dim, p.head_dim);
      tile_gemm(Op::none, Op::none, T(1), tile, v_copy.view(n, g, j0, cols), T(1), acc_view);
    }
    write_output(p, n, h, i0, rows, ws.acc.data(), ws.m.data(), ws.l.data());
  });
}

template void attention_fwd<float>(const AttentionParams<float>&);
template void attention_fwd<double>(const AttentionParams<double>&);

}  // namespace lorafast
