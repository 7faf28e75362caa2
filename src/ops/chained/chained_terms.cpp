// The low-rank (Taylor) terms of the chained gradient: key and query statistics and
// their application to a block of rows (see chained_head.hpp for the algebra).
#include <algorithm>

#include "ops/chained/chained_head.hpp"
#include "ops/exact/head_views.hpp"
#include "ops/fast/fast_common.hpp"
#include "ops/fast/state_products.hpp"

namespace lorafast::chained {

namespace {

template <class T>
std::int64_t width_of(const Head<T>& head, std::int64_t b) {
  return fast::padded_width<T>(head.rows_of(b));
}

// x^T ([cols, width]) into out; padding columns zero.
template <class T>
MatrixView<T> transpose_into(MatrixView<const T> x, LineVector<T>& out, std::int64_t width) {
  const MatrixView<T> t{out.data(), x.cols, width, width};
  std::fill(out.begin(), out.begin() + x.cols * width, T(0));
  for (std::int64_t r = 0; r < x.rows; ++r)
    for (std::int64_t m = 0; m < x.cols; ++m) t(m, r) = x(r, m);
  return t;
}

// phi(x) of the block's rows x ([rows, E]) in ws.features, column layout [F, width];
// x^T in ws.x_t.
template <class T>
MatrixView<T> map_block(const Head<T>& head, Workspace<T>& ws, MatrixView<const T> x, std::int64_t width) {
  const MatrixView<T> out{ws.features.data(), head.f, width, width};
  head.phi->map_columns(MatrixView<const T>(transpose_into(x, ws.x_t, width)), out);
  return out;
}

// state (+)= phi'(x)^T y_t^T for the block mapped by map_block. The degree-(g+1) rows of
// phi' (three in five at E = 8, g = 4) have no children: they are computed as they are
// read, phi_parent x_m / sqrt(a_m + 1), instead of being stored and loaded back.
template <class T>
void raised_by_rows(const Head<T>& head, const Workspace<T>& ws, std::type_identity_t<MatrixView<const T>> y_t,
                    MatrixView<T> state, bool accumulate) {
  using S = fast::Simd<T>;
  const std::int64_t width = y_t.cols, cols = state.cols;
  const MatrixView<const T> phi{ws.features.data(), head.f, width, width};
  const MatrixView<const T> x_t{ws.x_t.data(), head.e, width, width};
  fast::features_by_rows<T>(phi, y_t, state.block(0, 0, head.f, cols), accumulate);
  const std::int32_t* parent = head.raise->top_parent.data();
  const std::int32_t* variable = head.raise->top_variable.data();
  const T* scale = head.top_scale.data();
  fast::features_by_rows<T>(
      [&](std::int64_t t, std::int64_t r0) {
        return S::load(phi.row(parent[t]) + r0) * (S::load(x_t.row(variable[t]) + r0) * scale[t]);
      },
      width, y_t, state.block(head.f, 0, head.f1 - head.f, cols), accumulate);
}

// The thin right-hand side [E + 1, width]: rows x^T (zero padding), then `last`
// (whose padding entries must be zero).
template <class T>
MatrixView<T> thin_rows(Workspace<T>& ws, MatrixView<const T> x, const T* last, std::int64_t width) {
  const auto y_t = transpose_into(x, ws.y_t, width);
  std::copy(last, last + width, ws.y_t.data() + x.cols * width);
  return {y_t.data, x.cols + 1, width, width};
}

// grad_t[m, r] = sum_{f < F} phi[f, r] sqrt(a_m + 1) u[child(f, m), r]: [E, width].
// Tiles of up to 4 variables x 4 SIMD columns stay in registers across the whole sum
// over f, each phi load serving every variable of the tile.
template <class T>
MatrixView<T> lowered(const Head<T>& head, Workspace<T>& ws, MatrixView<const T> phi,
                      std::type_identity_t<MatrixView<const T>> u) {
  using S = fast::Simd<T>;
  constexpr std::int64_t w = S::lanes, tile = 4;
  const std::int64_t e = head.e, width = phi.cols;
  const MatrixView<T> out{ws.grad_t.data(), e, width, width};
  const std::int32_t* child = head.raise->child.data();
  const T* factor = head.raise_factor.data();
  for (std::int64_t m0 = 0; m0 < e; m0 += tile)
    for (std::int64_t r0 = 0; r0 < width; r0 += tile * w)
      fast::with_group<tile>(static_cast<int>(std::min(tile, e - m0)), [&](auto variables) {
        fast::with_group<tile>(static_cast<int>(std::min(tile, (width - r0) / w)), [&](auto columns) {
          constexpr int nm = decltype(variables)::value, nr = decltype(columns)::value;
          typename S::vec acc[nm][nr] = {};
          for (std::int64_t f = 0; f < head.f; ++f) {
            typename S::vec p[nr];
            for (int k = 0; k < nr; ++k) p[k] = S::load(phi.row(f) + r0 + k * w);
            for (int j = 0; j < nm; ++j) {
              const T* uc = u.row(child[f * e + m0 + j]) + r0;
              const T c = factor[f * e + m0 + j];
              for (int k = 0; k < nr; ++k) acc[j][k] += p[k] * (c * S::load(uc + k * w));
            }
          }
          for (int j = 0; j < nm; ++j)
            for (int k = 0; k < nr; ++k) S::store(out.row(m0 + j) + r0 + k * w, acc[j][k]);
        });
      });
  return out;
}

}  // namespace

template <class T>
Head<T> make_head(const AttentionParams<T>& p, std::int64_t n, std::int64_t h, const SurrogateConfig& config,
                  const TaylorFeatures& phi, const FeatureRaise& raise) {
  Head<T> head;
  head.phi = &phi;
  head.raise = &raise;
  head.raise_factor.assign(raise.factor.begin(), raise.factor.end());
  head.top_scale.assign(raise.top_scale.begin(), raise.top_scale.end());
  head.len = p.seq_len;
  head.e = p.head_dim;
  head.f = phi.size();
  head.f1 = head.f + static_cast<std::int64_t>(raise.top_parent.size());
  head.causal = p.causal;
  head.block = block_rows(p.causal, config);
  head.scaled = fast::scale_head(p, n, h, config);
  const std::int64_t l = p.seq_len;
  const std::int64_t g = p.kv_head(h);
  head.v = exact::v_rows(p, n, g, 0, l);
  head.d_o = exact::d_o_rows(p, n, h, 0, l);
  head.o = exact::o_rows(p, n, h, 0, l);
  head.d_q = exact::d_q_rows(p, n, h, 0, l);
  head.d_k = exact::d_k_rows(p, n, g, 0, l);
  head.d_v = exact::d_v_rows(p, n, g, 0, l);
  head.delta.assign(static_cast<std::size_t>(l), T(0));
  head.z.assign(static_cast<std::size_t>(l), T(0));
  return head;
}

template <class T>
Workspace<T>::Workspace(const Head<T>& head) {
  const std::int64_t rows = std::min(head.block, head.len), width = fast::padded_width<T>(rows);
  features.resize(static_cast<std::size_t>(head.f * width));
  raised.resize(static_cast<std::size_t>(head.f1 * width));
  x_t.resize(static_cast<std::size_t>(head.e * width));
  y_t.resize(static_cast<std::size_t>((head.e + 1) * width));
  grad_t.resize(static_cast<std::size_t>(std::max<std::int64_t>(head.e, 2) * width));  // or two [width] rows
  product.resize(static_cast<std::size_t>(std::max(rows * head.e, width)));
  if (head.causal) {
    weights.resize(static_cast<std::size_t>(rows * rows));
    d_p.resize(weights.size());
    in_chunk_sum.resize(static_cast<std::size_t>(rows));
  }
}

template <class T>
void add_key_stats(const Head<T>& head, Workspace<T>& ws, std::int64_t b,
                   std::type_identity_t<MatrixView<T>> key_state, bool accumulate) {
  const std::int64_t j0 = b * head.block, rows = head.rows_of(b), width = width_of(head, b);
  map_block(head, ws, head.scaled.k_view(rows, head.e, j0), width);
  T* ones = ws.grad_t.data();  // [width]: 1 on the block's rows
  for (std::int64_t r = 0; r < width; ++r) ones[r] = r < rows ? T(1) : T(0);
  raised_by_rows(head, ws, thin_rows(ws, head.v.block(j0, 0, rows, head.e), ones, width), key_state, accumulate);
}

template <class T>
void query_block(Head<T>& head, Workspace<T>& ws, std::int64_t b,
                 std::type_identity_t<MatrixView<const T>> key_state) {
  const std::int64_t i0 = b * head.block, rows = head.rows_of(b), e = head.e, width = width_of(head, b);
  T* minus_delta = ws.product.data();  // [width], until z is computed
  for (std::int64_t r = 0; r < width; ++r) {
    T dot = 0;
    for (std::int64_t m = 0; m < e && r < rows; ++m) dot += head.d_o(i0 + r, m) * head.o(i0 + r, m);
    if (r < rows) head.delta[i0 + r] = dot;
    minus_delta[r] = -dot;
  }
  const MatrixView<const T> phi = map_block(head, ws, head.scaled.q_view(rows, e, i0), width);
  // U = key state [dO; -delta] per row, [F', width].
  const MatrixView<T> u{ws.raised.data(), head.f1, width, width};
  fast::state_by_rows<T>(key_state, thin_rows(ws, head.d_o.block(i0, 0, rows, e), minus_delta, width), u);
  const MatrixView<T> z_taylor{ws.product.data(), rows, 1, 1};
  fast::rows_by_state<T>(phi, key_state.block(0, e, head.f, 1), z_taylor, false);
  if (head.causal) in_chunk_weights(head, ws, b);
  const auto d_q_t = lowered(head, ws, phi, u);
  const T a = head.scaled.q_factor;
  for (std::int64_t r = 0; r < rows; ++r) {
    const T z = z_taylor(r, 0) + (head.causal ? ws.in_chunk_sum[r] : T(0));
    head.z[i0 + r] = z;
    // The diag(1/z) of P~ scales the ROW i.
    const T row_scale = a / z;
    for (std::int64_t m = 0; m < e; ++m) head.d_q(i0 + r, m) = row_scale * d_q_t(m, r);
  }
  if (head.causal) in_chunk_gradients(head, ws, b);
}

template <class T>
void add_query_stats(const Head<T>& head, Workspace<T>& ws, std::int64_t b, bool features_ready,
                     std::type_identity_t<MatrixView<T>> query_state, bool accumulate) {
  const std::int64_t i0 = b * head.block, rows = head.rows_of(b), e = head.e, width = width_of(head, b);
  if (!features_ready) map_block(head, ws, head.scaled.q_view(rows, e, i0), width);
  // Qn = diag(1/z) Fq: the row scaling goes on the thin right-hand side [dO | delta] / z.
  T* inv_z = ws.grad_t.data();  // [width], zero in the padding
  for (std::int64_t r = 0; r < width; ++r) inv_z[r] = r < rows ? T(1) / head.z[i0 + r] : T(0);
  T* delta_z = ws.grad_t.data() + width;
  for (std::int64_t r = 0; r < width; ++r) delta_z[r] = r < rows ? head.delta[i0 + r] * inv_z[r] : T(0);
  const auto y_t = thin_rows(ws, head.d_o.block(i0, 0, rows, e), delta_z, width);
  for (std::int64_t m = 0; m < e; ++m)
    for (std::int64_t r = 0; r < width; ++r) y_t(m, r) *= inv_z[r];
  raised_by_rows(head, ws, y_t, query_state, accumulate);
}

template <class T>
void key_block(const Head<T>& head, Workspace<T>& ws, std::int64_t b,
               std::type_identity_t<MatrixView<const T>> query_state) {
  const std::int64_t j0 = b * head.block, rows = head.rows_of(b), e = head.e, width = width_of(head, b);
  const MatrixView<const T> phi = map_block(head, ws, head.scaled.k_view(rows, e, j0), width);
  // W = query state [v; -1] per row, [F', width]; dV = phi(k') (query state)[:F, :E].
  T* minus_one = ws.product.data();  // [width], until dV is computed
  for (std::int64_t r = 0; r < width; ++r) minus_one[r] = r < rows ? T(-1) : T(0);
  const MatrixView<T> w{ws.raised.data(), head.f1, width, width};
  fast::state_by_rows<T>(query_state, thin_rows(ws, head.v.block(j0, 0, rows, e), minus_one, width), w);
  const MatrixView<T> dv{ws.product.data(), rows, e, e};
  fast::rows_by_state<T>(phi, query_state.block(0, 0, head.f, e), dv, false);
  const auto d_k_t = lowered(head, ws, phi, w);
  const T bk = head.scaled.k_factor;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t m = 0; m < e; ++m) {
      T& dk = head.d_k(j0 + r, m);
      T& dvm = head.d_v(j0 + r, m);
      dk = (head.causal ? dk : T(0)) + bk * d_k_t(m, r);
      dvm = (head.causal ? dvm : T(0)) + dv(r, m);
    }
}

#define LORAFAST_CHAINED_TERMS(T)                                                                              \
  template Head<T> make_head(const AttentionParams<T>&, std::int64_t, std::int64_t, const SurrogateConfig&,     \
                             const TaylorFeatures&, const FeatureRaise&);                                      \
  template struct Workspace<T>;                                                                                \
  template void add_key_stats(const Head<T>&, Workspace<T>&, std::int64_t, MatrixView<T>, bool);               \
  template void query_block(Head<T>&, Workspace<T>&, std::int64_t, MatrixView<const T>);                       \
  template void add_query_stats(const Head<T>&, Workspace<T>&, std::int64_t, bool, MatrixView<T>, bool);       \
  template void key_block(const Head<T>&, Workspace<T>&, std::int64_t, MatrixView<const T>);
LORAFAST_CHAINED_TERMS(float)
LORAFAST_CHAINED_TERMS(double)
#undef LORAFAST_CHAINED_TERMS

}  // namespace lorafast::chained
