// Fast path, causal (SPEC §3.3): chunks of C rows. Inside a chunk the weights are the
// exact exp(q'.k') for j <= i (a C x C block); earlier chunks enter through the
// exclusive prefix state Pre_c = sum_{c' < c} Fk_c'^T [V | 1]_c'. Backward: the states'
// gradients dPre_c = Fq_c^T d[Num|z]_c flow back to the keys of earlier chunks as the
// suffix sums sum_{c' > c} dPre_c' (the transposed direction of the prefix scan).
// The per-chunk states are built in parallel and scanned sequentially: O(L/C * F * E).
#include <cmath>

#include "kernels/gemm.hpp"
#include "ops/fast/fast_common.hpp"
#include "ops/fast/fast_paths.hpp"
#include "ops/fast/scaled_head.hpp"

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
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < ch.count; ++c) {
    const std::int64_t j0 = ch.begin(c), rows = ch.rows(c, l);
    const MatrixView<T> fk{scratch<T>(0, rows * f), rows, f, f};
    phi.map(sh.k_view(rows, e, j0), fk);
    gemm(Op::trans, Op::none, T(1), fk, MatrixView<const T>{v1.data() + j0 * e1, rows, e1, e1}, T(0),
         MatrixView<T>{states.data() + c * state, f, e1, e1});
  }
  std::vector<T> running(static_cast<std::size_t>(state));
  for (std::int64_t c = 0; c < ch.count; ++c) {
    T* s = states.data() + c * state;
    for (std::int64_t i = 0; i < state; ++i) std::swap(s[i], running[i]), running[i] += s[i];
  }
  return states;
}

// The chunk's exact in-chunk weights W_ij = exp(q'_i.k'_j) for j <= i, else 0: [rows, rows].
template <class T>
MatrixView<T> in_chunk_weights(const ScaledHead<T>& sh, std::int64_t i0, std::int64_t rows, std::int64_t e, int slot) {
  const MatrixView<T> w{scratch<T>(slot, rows * rows), rows, rows, rows};
  gemm(Op::none, Op::trans, T(1), sh.q_view(rows, e, i0), sh.k_view(rows, e, i0), T(0), w);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < rows; ++c) w(r, c) = c <= r ? std::exp(w(r, c)) : T(0);
  return w;
}

// [Num | z] of chunk c: Fq_c Pre_c + W_c [V | 1]_c. Leaves Fq_c in `fq`.
template <class T>
void chunk_numerator(const ScaledHead<T>& sh, const std::vector<T>& v1, const T* pre, std::int64_t i0, std::int64_t rows,
                     std::int64_t e, const TaylorFeatures& phi, MatrixView<T> fq,
                     std::type_identity_t<MatrixView<const T>> w, MatrixView<T> nz) {
  const std::int64_t f = phi.size(), e1 = e + 1;
  phi.map(sh.q_view(rows, e, i0), fq);
  gemm(Op::none, Op::none, T(1), fq, MatrixView<const T>{pre, f, e1, e1}, T(0), nz);
  gemm(Op::none, Op::none, T(1), w, MatrixView<const T>{v1.data() + i0 * e1, rows, e1, e1}, T(1), nz);
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
      const std::int64_t i0 = ch.begin(c), rows = ch.rows(c, l);
      const MatrixView<T> fq{scratch<T>(0, rows * f), rows, f, f}, nz{scratch<T>(1, rows * e1), rows, e1, e1};
      const auto w = in_chunk_weights(sh, i0, rows, e, 2);
      chunk_numerator(sh, v1, pre.data() + c * f * e1, i0, rows, e, phi, fq, w, nz);
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
      const MatrixView<T> fq{scratch<T>(0, rows * f), rows, f, f}, d_fq{scratch<T>(1, rows * f), rows, f, f};
      const MatrixView<T> nz{scratch<T>(2, rows * e1), rows, e1, e1}, d_nz{scratch<T>(3, rows * e1), rows, e1, e1};
      std::vector<T> d_in_chunk(static_cast<std::size_t>(rows * rows)), grads(static_cast<std::size_t>(2 * rows * e));
      const MatrixView<T> d_w{d_in_chunk.data(), rows, rows, rows};
      const MatrixView<T> d_q{grads.data(), rows, e, e}, d_k{grads.data() + rows * e, rows, e, e};
      const auto w = in_chunk_weights(sh, i0, rows, e, 4);
      const T* pre_c = pre.data() + c * state;
      chunk_numerator(sh, v1, pre_c, i0, rows, e, phi, fq, w, nz);
      numerator_grads(p, n, h, i0, nz, d_nz);
      // Through the prefix state.
      gemm(Op::none, Op::trans, T(1), d_nz, MatrixView<const T>{pre_c, f, e1, e1}, T(0), d_fq);
      gemm(Op::trans, Op::none, T(1), fq, d_nz, T(0), MatrixView<T>{d_states.data() + c * state, f, e1, e1});
      phi.map_bwd(sh.q_view(rows, e, i0), fq, d_fq, d_q);
      // Inside the chunk: dW = d[Num|z] [V|1]^T, dS = dW ∘ W (d exp = exp; masked W = 0).
      const MatrixView<const T> v1_c{v1.data() + i0 * e1, rows, e1, e1};
      gemm(Op::none, Op::trans, T(1), d_nz, v1_c, T(0), d_w);
      for (std::int64_t i = 0; i < rows * rows; ++i) d_w.data[i] *= w.data[i];
      gemm(Op::none, Op::none, T(1), d_w, sh.k_view(rows, e, i0), T(1), d_q);
      gemm(Op::trans, Op::none, T(1), d_w, sh.q_view(rows, e, i0), T(0), d_k);
      gemm(Op::trans, Op::none, T(1), w, d_nz.block(0, 0, rows, e), T(0), exact::head_rows(p.d_v, p, n, h, i0, rows));
      store_scaled(p, p.d_q, n, h, i0, d_q, sh.q_factor);
      store_scaled(p, p.d_k, n, h, i0, d_k, sh.k_factor);
    }
    // Suffix scan: the keys of chunk c feed the prefix states of every later chunk.
    std::vector<T> running(static_cast<std::size_t>(state));
    for (std::int64_t c = ch.count - 1; c >= 0; --c) {
      T* s = d_states.data() + c * state;
      for (std::int64_t i = 0; i < state; ++i) std::swap(s[i], running[i]), running[i] += s[i];
    }
    // Keys: dFk = [V|1] dS_c^T, dV += Fk dS_c[:, :E].
#pragma omp parallel for schedule(static)
    for (std::int64_t c = 0; c < ch.count; ++c) {
      const std::int64_t j0 = ch.begin(c), rows = ch.rows(c, l);
      const MatrixView<const T> d_state{d_states.data() + c * state, f, e1, e1};
      const MatrixView<T> fk{scratch<T>(0, rows * f), rows, f, f}, d_fk{scratch<T>(1, rows * f), rows, f, f};
      phi.map(sh.k_view(rows, e, j0), fk);
      gemm(Op::none, Op::trans, T(1), MatrixView<const T>{v1.data() + j0 * e1, rows, e1, e1}, d_state, T(0), d_fk);
      gemm(Op::none, Op::none, T(1), fk, d_state.block(0, 0, f, e), T(1), exact::head_rows(p.d_v, p, n, h, j0, rows));
      std::vector<T> d_k(static_cast<std::size_t>(rows * e));
      const MatrixView<T> d_k_view{d_k.data(), rows, e, e};
      phi.map_bwd(sh.k_view(rows, e, j0), fk, d_fk, d_k_view);
      store_scaled(p, p.d_k, n, h, j0, d_k_view, sh.k_factor, true);
    }
  }
}

template void causal_fwd(const AttentionParams<float>&, std::int64_t, const SurrogateConfig&, const TaylorFeatures&);
template void causal_fwd(const AttentionParams<double>&, std::int64_t, const SurrogateConfig&, const TaylorFeatures&);
template void causal_bwd(const AttentionParams<float>&, std::int64_t, const SurrogateConfig&, const TaylorFeatures&);
template void causal_bwd(const AttentionParams<double>&, std::int64_t, const SurrogateConfig&, const TaylorFeatures&);

}  // namespace lorafast::fast
