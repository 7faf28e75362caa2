// Fast path, bidirectional (SPEC §3.2b): with the state KV1 = Fk^T [V | 1] ([F, E+1]),
// [Num | z] = Fq KV1 and O = Num / z. Backward: z from Fq KV1[:, E] (delta comes from
// the stored O), d[Num | z] from numerator_grads, dFq = d[Num|z] KV1^T,
// dKV1 = Fq^T d[Num|z], dFk = [V | 1] dKV1^T, dV = Fk dKV1[:, :E], then dq', dk'
// through the feature map's reverse mode. Features are built per block of rows in
// column layout ([F, rows], features.hpp), so at most a block of them is held per thread.
#include "ops/fast/fast_paths.hpp"

#include "ops/fast/fast_common.hpp"
#include "ops/fast/scaled_head.hpp"
#include "ops/fast/state_products.hpp"

namespace lorafast::fast {
namespace {

constexpr std::int64_t block_rows = 128;

// KV1 = Fk^T [V | 1] over all keys of one sequence.
template <class T>
std::vector<T> key_state(const ScaledHead<T>& sh, const std::vector<T>& v1, std::int64_t l, std::int64_t e,
                         const TaylorFeatures& phi) {
  const std::int64_t f = phi.size(), e1 = e + 1;
  return blocks_with_partial_sums<T>(exact::ceil_div(l, block_rows), f * e1, [&](std::int64_t b, T* acc) {
    const std::int64_t j0 = b * block_rows, rows = std::min(block_rows, l - j0);
    const auto k_t = transposed(sh.k_view(rows, e, j0), 0);
    const auto fk = column_block<T>(1, f, k_t.cols);
    phi.map_columns(k_t, fk);
    features_by_rows<T>(fk, transposed(MatrixView<const T>{v1.data() + j0 * e1, rows, e1, e1}, 2),
                        MatrixView<T>{acc, f, e1, e1}, true);
  });
}

}  // namespace

template <class T>
void bidir_fwd(const AttentionParams<T>& p, std::int64_t h, const SurrogateConfig& config, const TaylorFeatures& phi) {
  const std::int64_t l = p.seq_len, e = p.head_dim, f = phi.size(), e1 = e + 1;
  for (std::int64_t n = 0; n < p.batch; ++n) {
    const auto sh = scale_head(p, n, h, config);
    const auto kv = key_state(sh, values_with_ones(p, n, h), l, e, phi);
#pragma omp parallel for schedule(static)
    for (std::int64_t b = 0; b < exact::ceil_div(l, block_rows); ++b) {
      const std::int64_t i0 = b * block_rows, rows = std::min(block_rows, l - i0);
      const auto q_t = transposed(sh.q_view(rows, e, i0), 0);
      const auto fq = column_block<T>(1, f, q_t.cols);
      const MatrixView<T> nz{scratch<T>(2, rows * e1), rows, e1, e1};
      phi.map_columns(q_t, fq);
      rows_by_state<T>(fq, MatrixView<const T>{kv.data(), f, e1, e1}, nz, false);
      store_output(p, n, h, i0, nz);
    }
  }
}

template <class T>
void bidir_bwd(const AttentionParams<T>& p, std::int64_t h, const SurrogateConfig& config, const TaylorFeatures& phi) {
  const std::int64_t l = p.seq_len, e = p.head_dim, f = phi.size(), e1 = e + 1;
  const std::int64_t blocks = exact::ceil_div(l, block_rows);
  for (std::int64_t n = 0; n < p.batch; ++n) {
    const auto sh = scale_head(p, n, h, config);
    const auto v1 = values_with_ones(p, n, h);
    const auto kv = key_state(sh, v1, l, e, phi);
    const MatrixView<const T> kv_view{kv.data(), f, e1, e1};
    // Queries: dq and the state's gradient dKV1.
    const auto d_kv = blocks_with_partial_sums<T>(blocks, f * e1, [&](std::int64_t b, T* acc) {
      const std::int64_t i0 = b * block_rows, rows = std::min(block_rows, l - i0);
      const auto q_t = transposed(sh.q_view(rows, e, i0), 0);
      const std::int64_t width = q_t.cols;
      const auto fq = column_block<T>(1, f, width), d_fq = column_block<T>(2, f, width);
      phi.map_columns(q_t, fq);
      T* z = scratch<T>(3, rows);
      rows_by_state<T>(fq, kv_view.block(0, e, f, 1), MatrixView<T>{z, rows, 1, 1}, false);
      const MatrixView<T> d_nz{scratch<T>(4, rows * e1), rows, e1, e1};
      numerator_grads(p, n, h, i0, z, d_nz);
      const auto d_nz_t = transposed(MatrixView<const T>(d_nz), 6);
      state_by_rows<T>(kv_view, d_nz_t, d_fq);
      features_by_rows<T>(fq, d_nz_t, MatrixView<T>{acc, f, e1, e1}, true);
      const auto d_q = zeroed_columns<T>(5, e, width);
      phi.map_columns_bwd(q_t, fq, d_fq, d_q);
      store_columns(exact::d_q_rows(p, n, h, i0, rows), d_q.block(0, 0, e, rows), sh.q_factor);
    });
    const MatrixView<const T> d_kv_view{d_kv.data(), f, e1, e1};
    // Keys: dk and dv.
#pragma omp parallel for schedule(static)
    for (std::int64_t b = 0; b < blocks; ++b) {
      const std::int64_t j0 = b * block_rows, rows = std::min(block_rows, l - j0);
      const auto k_t = transposed(sh.k_view(rows, e, j0), 0);
      const auto fk = column_block<T>(1, f, k_t.cols), d_fk = column_block<T>(2, f, k_t.cols);
      phi.map_columns(k_t, fk);
      state_by_rows<T>(d_kv_view, transposed(MatrixView<const T>{v1.data() + j0 * e1, rows, e1, e1}, 4), d_fk);
      rows_by_state<T>(fk, d_kv_view.block(0, 0, f, e), exact::d_v_rows(p, n, p.kv_head(h), j0, rows), false);
      const auto d_k = zeroed_columns<T>(3, e, k_t.cols);
      phi.map_columns_bwd(k_t, fk, d_fk, d_k);
      store_columns(exact::d_k_rows(p, n, p.kv_head(h), j0, rows), d_k.block(0, 0, e, rows), sh.k_factor);
    }
  }
}

template void bidir_fwd(const AttentionParams<float>&, std::int64_t, const SurrogateConfig&, const TaylorFeatures&);
template void bidir_fwd(const AttentionParams<double>&, std::int64_t, const SurrogateConfig&, const TaylorFeatures&);
template void bidir_bwd(const AttentionParams<float>&, std::int64_t, const SurrogateConfig&, const TaylorFeatures&);
template void bidir_bwd(const AttentionParams<double>&, std::int64_t, const SurrogateConfig&, const TaylorFeatures&);

}  // namespace lorafast::fast
