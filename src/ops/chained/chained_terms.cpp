// The low-rank (Taylor) terms of the chained gradient: key and query statistics and
// their application to a block of rows (see chained_head.hpp for the algebra).
#include <algorithm>

#include "kernels/gemm.hpp"
#include "ops/chained/chained_head.hpp"
#include "ops/exact/head_views.hpp"

namespace lorafast::chained {

using kernels::gemm;
using kernels::Op;

namespace {

template <class T>
MatrixView<T> features_view(Workspace<T>& ws, std::int64_t rows, std::int64_t f) {
  return {ws.features.data(), rows, f, f};
}

}  // namespace

template <class T>
Head<T> make_head(const AttentionParams<T>& p, std::int64_t n, std::int64_t h, const SurrogateConfig& config,
                  const TaylorFeatures& phi) {
  Head<T> head;
  head.phi = &phi;
  head.len = p.seq_len;
  head.e = p.head_dim;
  head.f = phi.size();
  head.causal = p.causal;
  head.block = block_rows(p.causal, config);
  head.scaled = fast::scale_head(p, n, h, config);
  const std::int64_t l = p.seq_len;
  head.v = exact::head_rows(p.v, p, n, h, 0, l);
  head.d_o = exact::head_rows(p.d_o, p, n, h, 0, l);
  head.o = exact::head_rows(static_cast<const T*>(p.o), p, n, h, 0, l);
  head.d_q = exact::head_rows(p.d_q, p, n, h, 0, l);
  head.d_k = exact::head_rows(p.d_k, p, n, h, 0, l);
  head.d_v = exact::head_rows(p.d_v, p, n, h, 0, l);
  head.delta.assign(static_cast<std::size_t>(l), T(0));
  head.z.assign(static_cast<std::size_t>(l), T(0));
  return head;
}

template <class T>
Workspace<T>::Workspace(const Head<T>& head) {
  const std::int64_t rows = std::min(head.block, head.len);
  features.resize(static_cast<std::size_t>(rows * head.f));
  rhs.resize(static_cast<std::size_t>(rows * std::max(head.key_cols(), head.query_cols())));
  product.resize(rhs.size());
  if (head.causal) {
    weights.resize(static_cast<std::size_t>(rows * rows));
    d_p.resize(weights.size());
    in_chunk_sum.resize(static_cast<std::size_t>(rows));
  }
}

template <class T>
void add_key_stats(const Head<T>& head, Workspace<T>& ws, std::int64_t b,
                   std::type_identity_t<MatrixView<T>> key_state) {
  const std::int64_t j0 = b * head.block, rows = head.rows_of(b), e = head.e, cols = head.key_cols();
  const auto k = head.scaled.k_view(rows, e, j0);
  const auto fk = features_view(ws, rows, head.f);
  head.phi->template map<T>(k, fk);
  // Row j: [1 | v_j ⊗ k'_j | k'_j].
  const MatrixView<T> rhs{ws.rhs.data(), rows, cols, cols};
  for (std::int64_t r = 0; r < rows; ++r) {
    T* out = rhs.row(r);
    const T* vr = head.v.row(j0 + r);
    const T* kr = k.row(r);
    out[0] = T(1);
    for (std::int64_t a = 0; a < e; ++a)
      for (std::int64_t m = 0; m < e; ++m) out[1 + a * e + m] = vr[a] * kr[m];
    std::copy(kr, kr + e, out + 1 + e * e);
  }
  gemm<T>(Op::trans, Op::none, T(1), fk, rhs, T(1), key_state);
}

template <class T>
void query_block(Head<T>& head, Workspace<T>& ws, std::int64_t b,
                 std::type_identity_t<MatrixView<const T>> key_state) {
  const std::int64_t i0 = b * head.block, rows = head.rows_of(b), e = head.e, cols = head.key_cols();
  for (std::int64_t r = 0; r < rows; ++r) {
    T dot = 0;
    for (std::int64_t m = 0; m < e; ++m) dot += head.d_o(i0 + r, m) * head.o(i0 + r, m);
    head.delta[i0 + r] = dot;
  }
  const auto fq = features_view(ws, rows, head.f);
  head.phi->template map<T>(head.scaled.q_view(rows, e, i0), fq);
  // G = Fq [ks | A | Fk^T K']: row i holds the Taylor part of z_i, then
  // (Fq_i ⊗ I)(Fk ⊗_row V)^T K' as an [E, E] block, then Fq_i Fk^T K'.
  const MatrixView<T> g{ws.product.data(), rows, cols, cols};
  gemm<T>(Op::none, Op::none, T(1), fq, key_state, T(0), g);
  if (head.causal) in_chunk_weights(head, ws, b);
  const T a = head.scaled.q_factor;
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t i = i0 + r;
    const T* gr = g.row(r);
    const T z = gr[0] + (head.causal ? ws.in_chunk_sum[r] : T(0));
    head.z[i] = z;
    // dQ_i = a / z_i [ sum_e dO_ie A_i[e, :] - delta_i (Fq Fk^T K')_i ]: the diag(1/z) and
    // diag(delta) factors scale the ROW i of P~.
    const T row_scale = a / z, d = head.delta[i];
    const T* dor = head.d_o.row(i);
    T* dq = head.d_q.row(i);
    for (std::int64_t m = 0; m < e; ++m) dq[m] = -d * gr[1 + e * e + m];
    for (std::int64_t x = 0; x < e; ++x)
      for (std::int64_t m = 0; m < e; ++m) dq[m] += dor[x] * gr[1 + x * e + m];
    for (std::int64_t m = 0; m < e; ++m) dq[m] *= row_scale;
  }
  if (head.causal) in_chunk_gradients(head, ws, b);
}

template <class T>
void add_query_stats(const Head<T>& head, Workspace<T>& ws, std::int64_t b, bool features_ready,
                     std::type_identity_t<MatrixView<T>> query_state) {
  const std::int64_t i0 = b * head.block, rows = head.rows_of(b), e = head.e, cols = head.query_cols();
  const auto q = head.scaled.q_view(rows, e, i0);
  const auto qn = features_view(ws, rows, head.f);
  if (!features_ready) head.phi->template map<T>(q, qn);
  const MatrixView<T> rhs{ws.rhs.data(), rows, cols, cols};
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t i = i0 + r;
    const T inv_z = T(1) / head.z[i], d = head.delta[i];
    T* fr = qn.row(r);
    for (std::int64_t c = 0; c < head.f; ++c) fr[c] *= inv_z;  // Qn = diag(1/z) Fq
    // Row i: [dO_i ⊗ q'_i | delta_i q'_i | dO_i].
    T* out = rhs.row(r);
    const T* dor = head.d_o.row(i);
    const T* qr = q.row(r);
    for (std::int64_t x = 0; x < e; ++x)
      for (std::int64_t m = 0; m < e; ++m) out[x * e + m] = dor[x] * qr[m];
    for (std::int64_t m = 0; m < e; ++m) {
      out[e * e + m] = d * qr[m];
      out[e * e + e + m] = dor[m];
    }
  }
  gemm<T>(Op::trans, Op::none, T(1), qn, rhs, T(1), query_state);
}

template <class T>
void key_block(const Head<T>& head, Workspace<T>& ws, std::int64_t b,
               std::type_identity_t<MatrixView<const T>> query_state) {
  const std::int64_t j0 = b * head.block, rows = head.rows_of(b), e = head.e, cols = head.query_cols();
  const auto fk = features_view(ws, rows, head.f);
  head.phi->template map<T>(head.scaled.k_view(rows, e, j0), fk);
  // H = Fk [Qn^T (dO ⊗_row Q') | Qn^T diag(delta) Q' | Qn^T dO].
  const MatrixView<T> h{ws.product.data(), rows, cols, cols};
  gemm<T>(Op::none, Op::none, T(1), fk, query_state, T(0), h);
  const T bk = head.scaled.k_factor;
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t j = j0 + r;
    const T* hr = h.row(r);
    const T* vr = head.v.row(j);
    T* dk = head.d_k.row(j);
    T* dv = head.d_v.row(j);
    for (std::int64_t m = 0; m < e; ++m) {
      // dK_j = b [ (Fk_j ⊗ v_j)(Qn ⊗_row dO)^T Q' - Fk_j Qn^T diag(delta) Q' ],  dV_j = Fk_j Qn^T dO.
      T acc = -hr[e * e + m];
      for (std::int64_t x = 0; x < e; ++x) acc += vr[x] * hr[x * e + m];
      const T dv_m = hr[e * e + e + m];
      if (head.causal) {
        dk[m] += bk * acc;
        dv[m] += dv_m;
      } else {
        dk[m] = bk * acc;
        dv[m] = dv_m;
      }
    }
  }
}

#define LORAFAST_CHAINED_TERMS(T)                                                                              \
  template Head<T> make_head(const AttentionParams<T>&, std::int64_t, std::int64_t, const SurrogateConfig&,     \
                             const TaylorFeatures&);                                                           \
  template struct Workspace<T>;                                                                                \
  template void add_key_stats(const Head<T>&, Workspace<T>&, std::int64_t, MatrixView<T>);                     \
  template void query_block(Head<T>&, Workspace<T>&, std::int64_t, MatrixView<const T>);                       \
  template void add_query_stats(const Head<T>&, Workspace<T>&, std::int64_t, bool, MatrixView<T>);             \
  template void key_block(const Head<T>&, Workspace<T>&, std::int64_t, MatrixView<const T>);
LORAFAST_CHAINED_TERMS(float)
LORAFAST_CHAINED_TERMS(double)
#undef LORAFAST_CHAINED_TERMS

}  // namespace lorafast::chained
