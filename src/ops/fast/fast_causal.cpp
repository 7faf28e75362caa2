// Fast path, causal (SPEC §3.3): chunks of C rows. Inside a chunk the weights are the
// exact exp(q'.k') for j <= i (a C x C block); earlier chunks enter through the
// exclusive prefix state Pre_c = sum_{c' < c} Fk_c'^T [V | 1]_c'. Backward: the states'
// gradients dPre_c = Fq_c^T d[Num|z]_c flow back to the keys of earlier chunks as the
// suffix sums sum_{c' > c} dPre_c' (the transposed direction of the prefix scan).
// The per-chunk states are built in parallel and scanned in parallel over their
// entries: O(L/C * F * E) memory. Features are built per chunk in column layout
// ([F, rows], features.hpp) and recomputed rather than stored: mapping a chunk costs
// less than writing and re-reading its features.
#include <cmath>

#include "kernels/exp.hpp"
#include "kernels/gemm.hpp"
#include "ops/fast/fast_common.hpp"
#include "ops/fast/fast_paths.hpp"
#include "ops/fast/scaled_head.hpp"
#include "ops/fast/state_products.hpp"

namespace lorafast::fast {
namespace {

using kernels::gemm;
using kernels::Op;

struct Chunking {
  std::int64_t size, count;
  std::int64_t begin(std::int64_t c) const { return c * size; }
  std::int64_t rows(std::int64_t c, std::int64_t l) const { return std::min(size, l - c * size); }
};

// Exclusive prefix states Pre_c, each [F, E+1], for all chunks of one sequence.
template <class T>
std::vector<T> prefix_states(const ScaledHead<T>& sh, const std::vector<T>& v1, std::int64_t l, std::int64_t e,
                             const Chunking& ch, const TaylorFeatures& phi) {
  const std::int64_t f = phi.size(), e1 = e + 1, state = f * e1;
  std::vector<T> states(static_cast<std::size_t>(ch.count * state));
  // The last chunk's keys feed no later chunk.
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < ch.count - 1; ++c) {
    const std::int64_t j0 = ch.begin(c), rows = ch.rows(c, l);
    const auto k_t = transposed(sh.k_view(rows, e, j0), 0);
    const auto fk = column_block<T>(1, f, k_t.cols);
    phi.map_columns(k_t, fk);
    features_by_rows<T>(fk, transposed(MatrixView<const T>{v1.data() + j0 * e1, rows, e1, e1}, 2),
                        MatrixView<T>{states.data() + c * state, f, e1, e1}, false);
  }
  exclusive_scan(states.data(), ch.count, state, false);
  return states;
}

// The chunk's exact in-chunk weights W_ij = exp(q'_i.k'_j) for j <= i, else 0: [rows, rows].
template <class T>
MatrixView<T> in_chunk_weights(const ScaledHead<T>& sh, std::int64_t i0, std::int64_t rows, std::int64_t e, int slot) {
  const auto w = padded_block<T>(slot, rows, rows);
  gemm(Op::none, Op::trans, T(1), sh.q_view(rows, e, i0), sh.k_view(rows, e, i0), T(0), w);
  for (std::int64_t r = 0; r < rows; ++r) {
    T* wr = w.row(r);
#pragma omp simd
    for (std::int64_t c = 0; c <= r; ++c) wr[c] = kernels::exp_approx(wr[c]);
    std::fill(wr + r + 1, wr + rows, T(0));
  }
  return w;
}

}  // namespace

template <class T>
void causal_fwd(const AttentionParams<T>& p, std::int64_t h, const SurrogateConfig& config, const TaylorFeatures& phi) {
  const std::int64_t l = p.seq_len, e = p.head_dim, f = phi.size(), e1 = e + 1;
  const Chunking ch{config.chunk, exact::ceil_div(l, config.chunk)};
  for (std::int64_t n = 0; n < p.batch; ++n) {
    const auto sh = scale_head(p, n, h, config);
    const auto v1 = values_with_ones(p, n, h);
    const auto pre = prefix_states(sh, v1, l, e, ch, phi);
#pragma omp parallel for schedule(static)
    for (std::int64_t c = 0; c < ch.count; ++c) {
      // [Num | z] of the chunk: Fq_c Pre_c + W_c [V | 1]_c.
      const std::int64_t i0 = ch.begin(c), rows = ch.rows(c, l);
      const auto q_t = transposed(sh.q_view(rows, e, i0), 0);
      const auto fq = column_block<T>(1, f, q_t.cols);
      const MatrixView<T> nz{scratch<T>(2, rows * e1), rows, e1, e1};
      phi.map_columns(q_t, fq);
      rows_by_state<T>(fq, MatrixView<const T>{pre.data() + c * f * e1, f, e1, e1}, nz, false);
      gemm(Op::none, Op::none, T(1), in_chunk_weights(sh, i0, rows, e, 3),
           MatrixView<const T>{v1.data() + i0 * e1, rows, e1, e1}, T(1), nz);
      store_output(p, n, h, i0, nz);
    }
  }
}

template <class T>
void causal_bwd(const AttentionParams<T>& p, std::int64_t h, const SurrogateConfig& config, const TaylorFeatures& phi) {
  const std::int64_t l = p.seq_len, e = p.head_dim, f = phi.size(), e1 = e + 1, state = f * e1;
  const Chunking ch{config.chunk, exact::ceil_div(l, config.chunk)};
  for (std::int64_t n = 0; n < p.batch; ++n) {
    const auto sh = scale_head(p, n, h, config);
    const auto v1 = values_with_ones(p, n, h);
    const auto pre = prefix_states(sh, v1, l, e, ch, phi);
    std::vector<T> d_states(static_cast<std::size_t>(ch.count * state));
    // Queries, and everything inside each chunk.
#pragma omp parallel for schedule(static)
    for (std::int64_t c = 0; c < ch.count; ++c) {
      const std::int64_t i0 = ch.begin(c), rows = ch.rows(c, l);
      const MatrixView<const T> pre_c{pre.data() + c * state, f, e1, e1};
      const MatrixView<const T> v1_c{v1.data() + i0 * e1, rows, e1, e1};
      const auto q_t = transposed(sh.q_view(rows, e, i0), 0);
      const std::int64_t width = q_t.cols;
      const auto fq = column_block<T>(1, f, width);
      phi.map_columns(q_t, fq);
      const auto w = in_chunk_weights(sh, i0, rows, e, 2);
      // Only z of [Num | z] is needed: delta comes from the stored O.
      T* z = scratch<T>(3, rows);
      rows_by_state<T>(fq, pre_c.block(0, e, f, 1), MatrixView<T>{z, rows, 1, 1}, false);
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t j = 0; j <= r; ++j) z[r] += w(r, j);
      const MatrixView<T> d_nz{scratch<T>(4, rows * e1), rows, e1, e1};
      numerator_grads(p, n, h, i0, z, d_nz);
      // Through the prefix state: dFq^T = Pre d[Num|z]^T, dPre = Fq^T d[Num|z].
      const auto d_fq = column_block<T>(5, f, width);
      const auto d_nz_t = transposed(MatrixView<const T>(d_nz), 10);
      state_by_rows<T>(pre_c, d_nz_t, d_fq);
      features_by_rows<T>(fq, d_nz_t, MatrixView<T>{d_states.data() + c * state, f, e1, e1}, false);
      // Inside the chunk: dW = d[Num|z] [V|1]^T, dS = dW ∘ W (d exp = exp; masked W = 0),
      // dq^T = k'^T dS^T, dk^T = q'^T dS, dV = W^T dNum.
      const auto d_w = padded_block<T>(6, rows, rows);
      gemm(Op::none, Op::trans, T(1), d_nz, v1_c, T(0), d_w);
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t j = 0; j < rows; ++j) d_w(r, j) *= w(r, j);
      const auto d_q = zeroed_columns<T>(7, e, width), d_k = padded_block<T>(8, e, rows);
      gemm(Op::trans, Op::trans, T(1), sh.k_view(rows, e, i0), d_w, T(0), d_q.block(0, 0, e, rows));
      gemm(Op::trans, Op::none, T(1), sh.q_view(rows, e, i0), d_w, T(0), d_k);
      gemm(Op::trans, Op::none, T(1), w, d_nz.block(0, 0, rows, e), T(0), exact::d_v_rows(p, n, p.kv_head(h), i0, rows));
      phi.map_columns_bwd(q_t, fq, d_fq, d_q);
      store_columns(exact::d_q_rows(p, n, h, i0, rows), d_q.block(0, 0, e, rows), sh.q_factor);
      store_columns(exact::d_k_rows(p, n, p.kv_head(h), i0, rows), d_k, sh.k_factor);
    }
    exclusive_scan(d_states.data(), ch.count, state, true);
    // Keys: dFk^T = dS_c [V|1]^T, dV += Fk dS_c[:, :E]. The last chunk feeds no state.
#pragma omp parallel for schedule(static)
    for (std::int64_t c = 0; c < ch.count - 1; ++c) {
      const std::int64_t j0 = ch.begin(c), rows = ch.rows(c, l);
      const MatrixView<const T> d_state{d_states.data() + c * state, f, e1, e1};
      const auto k_t = transposed(sh.k_view(rows, e, j0), 0);
      const auto fk = column_block<T>(1, f, k_t.cols), d_fk = column_block<T>(2, f, k_t.cols);
      phi.map_columns(k_t, fk);
      state_by_rows<T>(d_state, transposed(MatrixView<const T>{v1.data() + j0 * e1, rows, e1, e1}, 4), d_fk);
      rows_by_state<T>(fk, d_state.block(0, 0, f, e), exact::d_v_rows(p, n, p.kv_head(h), j0, rows), true);
      const auto d_k = zeroed_columns<T>(3, e, k_t.cols);
      phi.map_columns_bwd(k_t, fk, d_fk, d_k);
      store_columns(exact::d_k_rows(p, n, p.kv_head(h), j0, rows), d_k.block(0, 0, e, rows), sh.k_factor, true);
    }
  }
}

template void causal_fwd(const AttentionParams<float>&, std::int64_t, const SurrogateConfig&, const TaylorFeatures&);
template void causal_fwd(const AttentionParams<double>&, std::int64_t, const SurrogateConfig&, const TaylorFeatures&);
template void causal_bwd(const AttentionParams<float>&, std::int64_t, const SurrogateConfig&, const TaylorFeatures&);
template void causal_bwd(const AttentionParams<double>&, std::int64_t, const SurrogateConfig&, const TaylorFeatures&);

}  // namespace lorafast::fast
