// Tiled exact attention backward (FlashAttention-2 on the CPU). P is recomputed tile
// by tile from the forward's row log-sum-exp; delta = rowsum(dO ∘ O). The work is
// shared out by backward_schedule.hpp. With grouped-query attention the query heads
// of a group add into their shared K/V head's dK, dV: no copies of K or V.
#include <type_traits>

#include "kernels/tile_gemm.hpp"
#include "lorafast/error.hpp"
#include "kernels/tile_ops.hpp"
#include "ops/exact/head_views.hpp"
#include "lorafast/bf16.hpp"
#include "ops/exact/attention_bf16.hpp"
#include "ops/exact/backward_schedule.hpp"
#include "ops/exact/head_copies.hpp"

namespace lorafast {
namespace {

using kernels::tile_gemm;
using kernels::Op;
using namespace exact;

template <class T>
struct Workspace {
  Scratch<T> p, d_p, delta, q, d_o;
  explicit Workspace(std::size_t e)
      : p(block_rows * block_cols), d_p(block_rows * block_cols), delta(block_rows),
        q(packed_size<T>(block_rows, e)), d_o(packed_size<T>(block_rows, e)) {}
};

// K and V copied once per call: transposed for the score GEMMs, K as rows for
// dQ += dS K.
template <class T>
struct KvCopies {
  HeadCopies<T> k_t, v_t, k_rows;
  explicit KvCopies(const AttentionParams<T>& p)
      : k_t(p.k, p.k_strides, p, HeadLayout::transposed),
        v_t(p.v, p.v_strides, p, HeadLayout::transposed),
        k_rows(p.k, p.k_strides, p, HeadLayout::rows) {}
};

// The f32 (and f64) query block for run_backward.
template <class T>
struct Kernel {
  const AttentionParams<T>& p;
  KvCopies<T> kv;
  Workspace<T> workspace() const { return Workspace<T>(p.head_dim); }
  void block(Workspace<T>& ws, std::int64_t n, std::int64_t h, std::int64_t i0, MatrixView<T> d_k,
             MatrixView<T> d_v) const;
};

template <class T>
void Kernel<T>::block(Workspace<T>& ws, std::int64_t n, std::int64_t h, std::int64_t i0, MatrixView<T> d_k,
                      MatrixView<T> d_v) const {
  const std::int64_t rows = std::min(block_rows, p.seq_len - i0), g = p.kv_head(h);
  const T scale = static_cast<T>(p.scale);
  const auto q = packed(q_rows(p, n, h, i0, rows), ws.q);
  const auto d_o = packed(d_o_rows(p, n, h, i0, rows), ws.d_o);
  const auto d_q = d_q_rows(p, n, h, i0, rows);
  const T* lse = p.lse + (n * p.heads + h) * p.seq_len + i0;
  start_block(p, n, h, i0, rows, ws.delta.data());
  const BlockKeys keys(p, n, i0, rows);
  for (std::int64_t j0 = keys.first; j0 < keys.end; j0 += block_cols) {
    const std::int64_t cols = std::min(block_cols, keys.end - j0);
    const auto k = kv.k_rows.view(n, g, j0, cols);
    const MatrixView<T> prob{ws.p.data(), rows, cols, block_cols};
    const MatrixView<T> grad{ws.d_p.data(), rows, cols, block_cols};
    tile_gemm(Op::none, Op::none, scale, q, kv.k_t.view(n, g, j0, cols), T(0), prob);  // S = scale Q K^T
    if (keys.needs_mask(j0, cols))
      kernels::mask_outside(prob.data, block_cols, rows, cols, j0, keys.lo.data(), keys.hi.data());
    kernels::exp_minus_row(prob.data, block_cols, rows, cols, lse);                        // P
    tile_gemm(Op::none, Op::none, T(1), d_o, kv.v_t.view(n, g, j0, cols), T(0), grad);  // dP = dO V^T
    tile_gemm(Op::trans, Op::none, T(1), prob, d_o, T(1), d_v.block(j0, 0, cols, p.head_dim));  // dV += P^T dO
    kernels::softmax_grad(grad.data, prob.data, block_cols, rows, cols, ws.delta.data());  // dS
    tile_gemm(Op::none, Op::none, scale, grad, k, T(1), d_q);                          // dQ += scale dS K
    tile_gemm(Op::trans, Op::none, scale, grad, q, T(1), d_k.block(j0, 0, cols, p.head_dim));  // dK += scale dS^T Q
  }
}

}  // namespace

template <class T>
void attention_bwd(const AttentionParams<T>& params) {
  const AttentionParams<T> p = checked(params, AttentionUse::backward);
  LF_CHECK(p.lse != nullptr, ErrorKind::usage, "attention: tensor lse is null");
  if constexpr (std::is_same_v<T, float>)
    if (p.bf16_products && bf16_arithmetic()) return attention_bwd_bf16(p);
  run_backward(p, Kernel<T>{p, KvCopies<T>(p)});
}

template void attention_bwd<float>(const AttentionParams<float>&);
template void attention_bwd<double>(const AttentionParams<double>&);

}  // namespace lorafast
