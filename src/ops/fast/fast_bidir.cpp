// Fast path, bidirectional (SPEC §3.2b): with the state KV1 = Fk^T [V | 1] ([F, E+1]),
// [Num | z] = Fq KV1 and O = Num / z. Backward: d[Num | z] from numerator_grads,
// dFq = d[Num|z] KV1^T, dKV1 = Fq^T d[Num|z], dFk = [V | 1] dKV1^T, dV = Fk dKV1[:, :E],
// then dq', dk' through the feature map's reverse mode. Features are built per block
// of rows, so at most a block of them is held per thread.
#include "ops/fast/fast_paths.hpp"

#include "kernels/gemm.hpp"
#include "ops/fast/fast_common.hpp"
#include "ops/fast/scaled_head.hpp"

namespace lorafast::fast {
namespace {

using kernels::gemm;
using kernels::Op;
constexpr std::int64_t block_rows = 128;

// KV1 = Fk^T [V | 1] over all keys of one sequence.
template <class T>
std::vector<T> key_state(const ScaledHead<T>& sh, const std::vector<T>& v1, std::int64_t l, std::int64_t e,
                         const TaylorFeatures& phi) {
  const std::int64_t f = phi.size(), e1 = e + 1;
  return blocks_with_partial_sums<T>(exact::ceil_div(l, block_rows), f * e1, [&](std::int64_t b, T* acc) {
    const std::int64_t j0 = b * block_rows, rows = std::min(block_rows, l - j0);
    const MatrixView<T> fk{scratch<T>(0, rows * f), rows, f, f};
    phi.map(sh.k_view(rows, e, j0), fk);
    gemm(Op::trans, Op::none, T(1), fk, MatrixView<const T>{v1.data() + j0 * e1, rows, e1, e1}, T(1),
         MatrixView<T>{acc, f, e1, e1});
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
      const MatrixView<T> fq{scratch<T>(0, rows * f), rows, f, f}, nz{scratch<T>(1, rows * e1), rows, e1, e1};
      phi.map(sh.q_view(rows, e, i0), fq);
      gemm(Op::none, Op::none, T(1), fq, MatrixView<const T>{kv.data(), f, e1, e1}, T(0), nz);
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
      const MatrixView<T> fq{scratch<T>(0, rows * f), rows, f, f}, d_fq{scratch<T>(1, rows * f), rows, f, f};
      const MatrixView<T> nz{scratch<T>(2, rows * e1), rows, e1, e1}, d_nz{scratch<T>(3, rows * e1), rows, e1, e1};
      phi.map(sh.q_view(rows, e, i0), fq);
      gemm(Op::none, Op::none, T(1), fq, kv_view, T(0), nz);
      numerator_grads(p, n, h, i0, nz, d_nz);
      gemm(Op::none, Op::trans, T(1), d_nz, kv_view, T(0), d_fq);
      gemm(Op::trans, Op::none, T(1), fq, d_nz, T(1), MatrixView<T>{acc, f, e1, e1});
      std::vector<T> d_q(static_cast<std::size_t>(rows * e));
      const MatrixView<T> d_q_view{d_q.data(), rows, e, e};
      phi.map_bwd(sh.q_view(rows, e, i0), fq, d_fq, d_q_view);
      store_scaled(p, p.d_q, n, h, i0, d_q_view, sh.q_factor);
    });
    const MatrixView<const T> d_kv_view{d_kv.data(), f, e1, e1};
    // Keys: dk and dv.
#pragma omp parallel for schedule(static)
    for (std::int64_t b = 0; b < blocks; ++b) {
      const std::int64_t j0 = b * block_rows, rows = std::min(block_rows, l - j0);
      const MatrixView<T> fk{scratch<T>(0, rows * f), rows, f, f}, d_fk{scratch<T>(1, rows * f), rows, f, f};
      phi.map(sh.k_view(rows, e, j0), fk);
      gemm(Op::none, Op::trans, T(1), MatrixView<const T>{v1.data() + j0 * e1, rows, e1, e1}, d_kv_view, T(0), d_fk);
      gemm(Op::none, Op::none, T(1), fk, d_kv_view.block(0, 0, f, e), T(0), exact::head_rows(p.d_v, p, n, h, j0, rows));
      std::vector<T> d_k(static_cast<std::size_t>(rows * e));
      const MatrixView<T> d_k_view{d_k.data(), rows, e, e};
      phi.map_bwd(sh.k_view(rows, e, j0), fk, d_fk, d_k_view);
      store_scaled(p, p.d_k, n, h, j0, d_k_view, sh.k_factor);
    }
  }
}

template void bidir_fwd(const AttentionParams<float>&, std::int64_t, const SurrogateConfig&, const TaylorFeatures&);
template void bidir_fwd(const AttentionParams<double>&, std::int64_t, const SurrogateConfig&, const TaylorFeatures&);
template void bidir_bwd(const AttentionParams<float>&, std::int64_t, const SurrogateConfig&, const TaylorFeatures&);
template void bidir_bwd(const AttentionParams<double>&, std::int64_t, const SurrogateConfig&, const TaylorFeatures&);

}  // namespace lorafast::fast
