// Exact attention forward and backward with bf16 tile products (attention_bf16.hpp).
// What is rounded to bf16 is what PyTorch's bf16 flash attention holds in bf16 — the
// inputs q, k, v, dO and the probability tile P before P V — plus, for the products
// that take them, P and dS before dV += P^T dO, dQ += dS K, dK += dS^T Q; scores, the
// online softmax, lse, delta and every accumulator (O, dQ, dK, dV) stay f32, where
// PyTorch keeps dQ, dK, dV in bf16 across key blocks.
#include "ops/exact/attention_bf16.hpp"

#include <algorithm>
#include <limits>

#include "kernels/bf16_gemm.hpp"
#include "kernels/tile_ops.hpp"
#include "ops/exact/backward_schedule.hpp"
#include "ops/exact/pair_copies.hpp"

namespace lorafast::exact {
namespace {

using kernels::PairTile;
using kernels::pair_gemm;

// C[m, n] (ldc) = alpha A B + beta C for A given as pair rows (a, a_ld words apart),
// or, transposed, as row pairs read down their columns.
PairTile pair_rows_times(std::int64_t m, std::int64_t n, std::int64_t pairs, const std::uint32_t* a, std::int64_t a_ld,
                         PairOperand b, float* c, std::int64_t ldc) {
  return {m, n, pairs, a, a_ld, 1, b.b, b.ldb, c, ldc};
}
PairTile row_pairs_transposed_times(std::int64_t m, std::int64_t n, std::int64_t pairs, const std::uint32_t* a,
                                    std::int64_t a_ld, PairOperand b, float* c, std::int64_t ldc) {
  return {m, n, pairs, a, 1, a_ld, b.b, b.ldb, c, ldc};
}

struct ForwardWorkspace {
  Scratch<float> s, acc, m, l;
  Scratch<std::uint32_t> q, p;  // the query block and the probability tile, as pair rows
};

}  // namespace

void attention_fwd_bf16(const AttentionParams<float>& p) {
  const PairHeadCopies k_t(p.k, p.k_strides, p, PairLayout::transposed);
  const PairHeadCopies v_pairs(p.v, p.v_strides, p, PairLayout::row_pairs);
  const std::int64_t e = p.head_dim, e_pairs = (e + 1) / 2, q_ld = pair_rows_ld(e), p_ld = pair_rows_ld(block_cols);
  const auto make_workspace = [&] {
    return ForwardWorkspace{Scratch<float>(block_rows * block_cols), Scratch<float>(block_rows * e),
                            Scratch<float>(block_rows), Scratch<float>(block_rows),
                            Scratch<std::uint32_t>(block_rows * q_ld), Scratch<std::uint32_t>(block_rows * p_ld)};
  };
  for_each_query_block(p, make_workspace, [&](ForwardWorkspace& ws, std::int64_t n, std::int64_t h, std::int64_t i0,
                                              std::int64_t rows) {
    const std::int64_t g = p.kv_head(h);
    to_pair_rows(q_rows(p, n, h, i0, rows), ws.q.data(), q_ld);
    std::fill(ws.acc.begin(), ws.acc.end(), 0.0f);
    std::fill(ws.m.begin(), ws.m.end(), -std::numeric_limits<float>::infinity());
    std::fill(ws.l.begin(), ws.l.end(), 0.0f);
    const BlockKeys keys(p, n, i0, rows);
    for (std::int64_t j0 = keys.first; j0 < keys.end; j0 += block_cols) {
      const std::int64_t cols = std::min(block_cols, keys.end - j0);
      pair_gemm(pair_rows_times(rows, cols, e_pairs, ws.q.data(), q_ld, k_t.view(n, g, j0), ws.s.data(), block_cols),
                static_cast<float>(p.scale), 0.0f);  // S = scale Q K^T
      if (keys.needs_mask(j0, cols))
        kernels::mask_outside(ws.s.data(), block_cols, rows, cols, j0, keys.lo.data(), keys.hi.data());
      kernels::online_softmax_step(ws.s.data(), block_cols, rows, cols, ws.m.data(), ws.l.data(), ws.acc.data(), e, e);
      to_pair_rows({ws.s.data(), rows, cols, block_cols}, ws.p.data(), p_ld);
      pair_gemm(pair_rows_times(rows, e, (cols + 1) / 2, ws.p.data(), p_ld, v_pairs.view(n, g, j0), ws.acc.data(), e),
                1.0f, 1.0f);  // acc += P V
    }
    write_output(p, n, h, i0, rows, ws.acc.data(), ws.m.data(), ws.l.data());
  });
}

namespace {

struct BackwardWorkspace {
  Scratch<float> p, d_p, delta;
  // The query block's Q and dO as pair rows (left operands) and as row pairs (right
  // operands); a probability or gradient tile as pair rows and as row pairs.
  Scratch<std::uint32_t> q_rows, q_pairs, d_o_rows, d_o_pairs, tile_rows, tile_pairs;
};

class BackwardKernel {
 public:
  explicit BackwardKernel(const AttentionParams<float>& p)
      : p_(p), k_t_(p.k, p.k_strides, p, PairLayout::transposed), v_t_(p.v, p.v_strides, p, PairLayout::transposed),
        k_pairs_(p.k, p.k_strides, p, PairLayout::row_pairs), e_ld_(pair_rows_ld(p.head_dim)),
        e_pairs_ld_(row_pairs_ld(p.head_dim)), tile_ld_(pair_rows_ld(block_cols)),
        tile_pairs_ld_(row_pairs_ld(block_cols)) {}

  BackwardWorkspace workspace() const {
    constexpr std::int64_t half = (block_rows + 1) / 2;
    return {Scratch<float>(block_rows * block_cols), Scratch<float>(block_rows * block_cols), Scratch<float>(block_rows),
            Scratch<std::uint32_t>(block_rows * e_ld_), Scratch<std::uint32_t>(half * e_pairs_ld_),
            Scratch<std::uint32_t>(block_rows * e_ld_), Scratch<std::uint32_t>(half * e_pairs_ld_),
            Scratch<std::uint32_t>(block_rows * tile_ld_), Scratch<std::uint32_t>(half * tile_pairs_ld_)};
  }

  void block(BackwardWorkspace& ws, std::int64_t n, std::int64_t h, std::int64_t i0, MatrixView<float> d_k,
             MatrixView<float> d_v) const {
    const auto& p = p_;
    const std::int64_t rows = std::min(block_rows, p.seq_len - i0), g = p.kv_head(h), e = p.head_dim;
    const std::int64_t e_pairs = (e + 1) / 2, row_pairs = (rows + 1) / 2;
    const float scale = static_cast<float>(p.scale);
    const auto q = q_rows(p, n, h, i0, rows), d_o = d_o_rows(p, n, h, i0, rows);
    to_pair_rows(q, ws.q_rows.data(), e_ld_);
    to_row_pairs(q, ws.q_pairs.data(), e_pairs_ld_);
    to_pair_rows(d_o, ws.d_o_rows.data(), e_ld_);
    to_row_pairs(d_o, ws.d_o_pairs.data(), e_pairs_ld_);
    const PairOperand q_right{ws.q_pairs.data(), e_pairs_ld_}, d_o_right{ws.d_o_pairs.data(), e_pairs_ld_};
    const auto d_q = d_q_rows(p, n, h, i0, rows);
    const float* lse = p.lse + (n * p.heads + h) * p.seq_len + i0;
    start_block(p, n, h, i0, rows, ws.delta.data());
    const BlockKeys keys(p, n, i0, rows);
    for (std::int64_t j0 = keys.first; j0 < keys.end; j0 += block_cols) {
      const std::int64_t cols = std::min(block_cols, keys.end - j0), col_pairs = (cols + 1) / 2;
      float* prob = ws.p.data();
      float* grad = ws.d_p.data();
      pair_gemm(pair_rows_times(rows, cols, e_pairs, ws.q_rows.data(), e_ld_, k_t_.view(n, g, j0), prob, block_cols),
                scale, 0.0f);  // S = scale Q K^T
      if (keys.needs_mask(j0, cols))
        kernels::mask_outside(prob, block_cols, rows, cols, j0, keys.lo.data(), keys.hi.data());
      kernels::exp_minus_row(prob, block_cols, rows, cols, lse);  // P
      pair_gemm(pair_rows_times(rows, cols, e_pairs, ws.d_o_rows.data(), e_ld_, v_t_.view(n, g, j0), grad, block_cols),
                1.0f, 0.0f);  // dP = dO V^T
      to_row_pairs({prob, rows, cols, block_cols}, ws.tile_pairs.data(), tile_pairs_ld_);
      pair_gemm(row_pairs_transposed_times(cols, e, row_pairs, ws.tile_pairs.data(), tile_pairs_ld_, d_o_right,
                                           d_v.row(j0), d_v.ld),
                1.0f, 1.0f);  // dV += P^T dO
      kernels::softmax_grad(grad, prob, block_cols, rows, cols, ws.delta.data());  // dS
      to_pair_rows({grad, rows, cols, block_cols}, ws.tile_rows.data(), tile_ld_);
      pair_gemm(pair_rows_times(rows, e, col_pairs, ws.tile_rows.data(), tile_ld_, k_pairs_.view(n, g, j0), d_q.data,
                                d_q.ld),
                scale, 1.0f);  // dQ += scale dS K
      to_row_pairs({grad, rows, cols, block_cols}, ws.tile_pairs.data(), tile_pairs_ld_);
      pair_gemm(row_pairs_transposed_times(cols, e, row_pairs, ws.tile_pairs.data(), tile_pairs_ld_, q_right,
                                           d_k.row(j0), d_k.ld),
                scale, 1.0f);  // dK += scale dS^T Q
    }
  }

 private:
  const AttentionParams<float>& p_;
  PairHeadCopies k_t_, v_t_, k_pairs_;
  std::int64_t e_ld_, e_pairs_ld_, tile_ld_, tile_pairs_ld_;
};

}  // namespace

void attention_bwd_bf16(const AttentionParams<float>& p) { run_backward(p, BackwardKernel(p)); }

}  // namespace lorafast::exact
