// Tiled exact attention backward (FlashAttention-2 on the CPU). P is recomputed tile
// by tile from the forward's row log-sum-exp; delta = rowsum(dO ∘ O). dQ rows belong
// to one work item; dK and dV gather contributions from every query block, so they
// are either owned by one thread per (sequence, head) or, when there are too few
// heads to keep every core busy, accumulated per thread and summed in thread order
// (deterministic for a given thread count). With grouped-query attention the query
// heads of a group add into their shared K/V head's dK, dV: no copies of K or V.
#include <omp.h>

#include <vector>

#include "kernels/tile_gemm.hpp"
#include "lorafast/error.hpp"
#include "kernels/tile_ops.hpp"
#include "ops/exact/head_views.hpp"
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

// One query block of head h of sequence n: writes its dQ rows and adds its share of
// dK and dV into d_k, d_v (views of all L rows of its K/V head).
template <class T>
void backward_block(const AttentionParams<T>& p, const KvCopies<T>& kv, std::int64_t n, std::int64_t h,
                    std::int64_t i0, MatrixView<T> d_k, MatrixView<T> d_v, Workspace<T>& ws) {
  const std::int64_t rows = std::min(block_rows, p.seq_len - i0), g = p.kv_head(h);
  const T scale = static_cast<T>(p.scale);
  const auto q = packed(q_rows(p, n, h, i0, rows), ws.q);
  const auto d_o = packed(d_o_rows(p, n, h, i0, rows), ws.d_o);
  const MatrixView<const T> o = o_rows(p, n, h, i0, rows);
  const auto d_q = d_q_rows(p, n, h, i0, rows);
  const T* lse = p.lse + (n * p.heads + h) * p.seq_len + i0;
  for (std::int64_t r = 0; r < rows; ++r) {
    T dot = 0;
    for (std::int64_t c = 0; c < p.head_dim; ++c) dot += d_o(r, c) * o(r, c);
    ws.delta[r] = dot;
    for (std::int64_t c = 0; c < p.head_dim; ++c) d_q(r, c) = 0;
  }
  const std::int64_t keys = visible_keys(p, i0, rows);
  for (std::int64_t j0 = 0; j0 < keys; j0 += block_cols) {
    const std::int64_t cols = std::min(block_cols, keys - j0);
    const auto k = kv.k_rows.view(n, g, j0, cols);
    const MatrixView<T> prob{ws.p.data(), rows, cols, block_cols};
    const MatrixView<T> grad{ws.d_p.data(), rows, cols, block_cols};
    tile_gemm(Op::none, Op::none, scale, q, kv.k_t.view(n, g, j0, cols), T(0), prob);  // S = scale Q K^T
    if (tile_needs_mask(p.causal, i0, j0, cols)) kernels::mask_future(prob.data, block_cols, rows, cols, i0, j0);
    kernels::exp_minus_row(prob.data, block_cols, rows, cols, lse);                        // P
    tile_gemm(Op::none, Op::none, T(1), d_o, kv.v_t.view(n, g, j0, cols), T(0), grad);  // dP = dO V^T
    tile_gemm(Op::trans, Op::none, T(1), prob, d_o, T(1), d_v.block(j0, 0, cols, p.head_dim));  // dV += P^T dO
    kernels::softmax_grad(grad.data, prob.data, block_cols, rows, cols, ws.delta.data());  // dS
    tile_gemm(Op::none, Op::none, scale, grad, k, T(1), d_q);                          // dQ += scale dS K
    tile_gemm(Op::trans, Op::none, scale, grad, q, T(1), d_k.block(j0, 0, cols, p.head_dim));  // dK += scale dS^T Q
  }
}

template <class T>
void zero(MatrixView<T> m) {
  for (std::int64_t r = 0; r < m.rows; ++r) std::fill(m.row(r), m.row(r) + m.cols, T(0));
}

// Enough (sequence, K/V head) pairs to share out whole: each thread owns its pairs'
// dK, dV and runs every query head of the group into them.
template <class T>
void backward_by_head(const AttentionParams<T>& p, const KvCopies<T>& kv) {
  const std::int64_t row_blocks = ceil_div(p.seq_len, block_rows), kv_heads = p.kv_head_count();
#pragma omp parallel
  {
    Workspace<T> ws(p.head_dim);
#pragma omp for schedule(static, 1)
    for (std::int64_t pair = 0; pair < p.batch * kv_heads; ++pair) {
      const std::int64_t n = pair / kv_heads, g = pair % kv_heads;
      if (!p.runs_kv(g)) continue;
      const auto d_k = d_k_rows(p, n, g, 0, p.seq_len), d_v = d_v_rows(p, n, g, 0, p.seq_len);
      if (!p.add_kv_grads) {
        zero(d_k);
        zero(d_v);
      }
      for (std::int64_t h = g * p.group_size(); h < (g + 1) * p.group_size(); ++h)
        if (p.runs(h))
          for (std::int64_t b = 0; b < row_blocks; ++b) backward_block(p, kv, n, h, b * block_rows, d_k, d_v, ws);
    }
  }
}

// Few K/V heads, long sequences: the query blocks of one group are shared across
// threads, each accumulating into private [L, E] dK, dV buffers that are then summed.
template <class T>
void backward_by_row_block(const AttentionParams<T>& p, const KvCopies<T>& kv) {
  const std::int64_t row_blocks = ceil_div(p.seq_len, block_rows), kv_heads = p.kv_head_count();
  const std::int64_t len = p.seq_len * p.head_dim, group = p.group_size();
  const int threads = omp_get_max_threads();
  std::vector<Scratch<T>> k_acc, v_acc;
  for (int t = 0; t < threads; ++t) k_acc.emplace_back(len), v_acc.emplace_back(len);
  for (std::int64_t pair = 0; pair < p.batch * kv_heads; ++pair) {
    const std::int64_t n = pair / kv_heads, g = pair % kv_heads;
    if (!p.runs_kv(g)) continue;
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num();
      const MatrixView<T> d_k{k_acc[t].data(), p.seq_len, p.head_dim, p.head_dim};
      const MatrixView<T> d_v{v_acc[t].data(), p.seq_len, p.head_dim, p.head_dim};
      zero(d_k);
      zero(d_v);
      Workspace<T> ws(p.head_dim);
      // Items: (query head of the group, row block), row blocks in back-and-forth order.
#pragma omp for schedule(static, 1)
      for (std::int64_t i = 0; i < group * row_blocks; ++i) {
        const std::int64_t item = back_and_forth(i, omp_get_num_threads(), group * row_blocks);
        const std::int64_t h = g * group + item / row_blocks;
        if (p.runs(h)) backward_block(p, kv, n, h, item % row_blocks * block_rows, d_k, d_v, ws);
      }
      const auto out_k = d_k_rows(p, n, g, 0, p.seq_len), out_v = d_v_rows(p, n, g, 0, p.seq_len);
#pragma omp for schedule(static)
      for (std::int64_t r = 0; r < p.seq_len; ++r)
        for (std::int64_t c = 0; c < p.head_dim; ++c) {
          T k_sum = p.add_kv_grads ? out_k(r, c) : T(0), v_sum = p.add_kv_grads ? out_v(r, c) : T(0);
          for (int u = 0; u < threads; ++u) {
            k_sum += k_acc[u][r * p.head_dim + c];
            v_sum += v_acc[u][r * p.head_dim + c];
          }
          out_k(r, c) = k_sum;
          out_v(r, c) = v_sum;
        }
    }
  }
}

}  // namespace

template <class T>
void attention_bwd(const AttentionParams<T>& params) {
  const AttentionParams<T> p = checked(params, AttentionUse::backward);
  LF_CHECK(p.lse != nullptr, ErrorKind::usage, "attention: tensor lse is null");
  const std::int64_t pairs = p.batch * p.kv_head_count();
  const int threads = omp_get_max_threads();
  const KvCopies<T> kv(p);
  if (pairs % threads == 0 || pairs >= 4 * threads)
    backward_by_head(p, kv);
  else
    backward_by_row_block(p, kv);
}

template void attention_bwd<float>(const AttentionParams<float>&);
template void attention_bwd<double>(const AttentionParams<double>&);

}  // namespace lorafast
