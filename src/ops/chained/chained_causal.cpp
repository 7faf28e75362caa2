// The dense in-chunk block of the causal chained gradient: for rows i and keys j of
// one chunk (C x C), w_ij = exp(s_ij) for j <= i with s_ij = q'_i.k'_j, exactly as the
// surrogate defines it (fast_attention.hpp); the earlier chunks come through the
// Taylor states of chained_terms.cpp.
#include "kernels/exp.hpp"
#include "kernels/gemm.hpp"
#include "ops/chained/chained_head.hpp"

namespace lorafast::chained {

using kernels::gemm;
using kernels::Op;

template <class T>
void in_chunk_weights(const Head<T>& head, Workspace<T>& ws, std::int64_t b) {
  const std::int64_t i0 = b * head.block, rows = head.rows_of(b), e = head.e;
  const auto q = head.scaled.q_view(rows, e, i0), k = head.scaled.k_view(rows, e, i0);
  const MatrixView<T> w{ws.weights.data(), rows, rows, rows};
  gemm<T>(Op::none, Op::trans, T(1), q, k, T(0), w);  // s = Q' K'^T
  for (std::int64_t r = 0; r < rows; ++r) {
    T* wr = w.row(r);
    T sum = 0;
    for (std::int64_t c = 0; c <= r; ++c) sum += (wr[c] = kernels::exp_approx(wr[c]));
    for (std::int64_t c = r + 1; c < rows; ++c) wr[c] = T(0);
    ws.in_chunk_sum[r] = sum;
  }
}

template <class T>
void in_chunk_gradients(const Head<T>& head, Workspace<T>& ws, std::int64_t b) {
  const std::int64_t i0 = b * head.block, rows = head.rows_of(b), e = head.e;
  const auto q = head.scaled.q_view(rows, e, i0), k = head.scaled.k_view(rows, e, i0);
  const auto d_o = head.d_o.block(i0, 0, rows, e);
  const MatrixView<T> p{ws.weights.data(), rows, rows, rows};
  const MatrixView<T> ds{ws.d_p.data(), rows, rows, rows};
  for (std::int64_t r = 0; r < rows; ++r) {  // P~_ij = w_ij / z_i: a ROW scaling
    const T inv_z = T(1) / head.z[i0 + r];
    for (std::int64_t c = 0; c <= r; ++c) p(r, c) *= inv_z;
  }
  gemm<T>(Op::none, Op::trans, T(1), d_o, head.v.block(i0, 0, rows, e), T(0), ds);  // dP = dO V^T
  gemm<T>(Op::trans, Op::none, T(1), p, d_o, T(0), head.d_v.block(i0, 0, rows, e));  // dV = P^T dO
  for (std::int64_t r = 0; r < rows; ++r) {  // dS = P ∘ (dP - delta 1^T); zero above the diagonal
    const T d = head.delta[i0 + r];
    for (std::int64_t c = 0; c < rows; ++c) ds(r, c) = p(r, c) * (ds(r, c) - d);
  }
  gemm<T>(Op::none, Op::none, head.scaled.q_factor, ds, k, T(1), head.d_q.block(i0, 0, rows, e));  // dQ += a dS K'
  gemm<T>(Op::trans, Op::none, head.scaled.k_factor, ds, q, T(0), head.d_k.block(i0, 0, rows, e));  // dK = b dS^T Q'
}

template void in_chunk_weights(const Head<float>&, Workspace<float>&, std::int64_t);
template void in_chunk_weights(const Head<double>&, Workspace<double>&, std::int64_t);
template void in_chunk_gradients(const Head<float>&, Workspace<float>&, std::int64_t);
template void in_chunk_gradients(const Head<double>&, Workspace<double>&, std::int64_t);

}  // namespace lorafast::chained
