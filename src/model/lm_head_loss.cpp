// Each chunk of rows is shared by all threads, each owning a contiguous slice of
// the vocabulary: its logits, exponentials and gradient columns, its rows of d_wte
// (so d_wte needs no per-thread copies) and a partial d_h, added in thread order.
// Every GEMM call repacks its whole wte operand (154 MB for GPT-2, read from memory
// at a few GB/s), so chunks are tall and each thread packs only its slice: with a
// 32-row chunk per thread the packing took a third of the head's time.
// Logits and exponentials are formed in T; sums of exponentials, log-sum-exps and
// losses are accumulated in double.
#include "model/lm_head_loss.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/scratch.hpp"
#include "kernels/exp.hpp"
#include "kernels/weight_gemm.hpp"

namespace lorafast {

using kernels::gemm;
using kernels::Op;

namespace {

// 512 rows: the chunk's logits are 512 * V values (103 MB for GPT-2).
constexpr std::int64_t chunk_rows = 512;

// Overwrites x[0, n) with exp(x - max) and returns their sum: exp in T
// (kernels::exp_approx vectorizes in float), the sum in double over 8 lanes.
template <class T>
double exp_and_sum(T* x, std::int64_t n, T max) {
  for (std::int64_t j = 0; j < n; ++j) x[j] = kernels::exp_approx(x[j] - max);
  double lanes[8] = {};
  std::int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; ++l) lanes[l] += static_cast<double>(x[j + l]);
  double sum = 0;
  for (; j < n; ++j) sum += static_cast<double>(x[j]);
  for (double l : lanes) sum += l;
  return sum;
}

// First vocabulary entry of thread t's slice, on a 16-entry boundary (a cache line of floats).
std::int64_t slice_start(std::int64_t vocab, int t, int threads) {
  return std::min(vocab, (vocab * t / threads + 15) / 16 * 16);
}

}  // namespace

template <class T>
double lm_head_loss(const LmHeadLossParams<T>& p) {
  const int threads = omp_get_max_threads();
  const auto nt = static_cast<std::size_t>(threads);
  const std::int64_t rc_max = std::min(chunk_rows, p.rows), dim = p.dim, vocab = p.vocab;
  const double inv_rows = 1.0 / static_cast<double>(p.normalizer > 0 ? p.normalizer : p.rows);
  // The [512, V] logits chunk (100 MB for GPT-2) from the scratch pool: reused by the next step.
  ScratchVector<T> logits(static_cast<std::size_t>(rc_max * vocab), T(0));
  // With soft-capping and a backward pass, each logit's tanh, for the factor 1 - tanh^2.
  ScratchVector<T> capped(p.softcap > 0 && p.d_h != nullptr ? logits.size() : 0, T(0));
  ScratchVector<T> d_h_partial(p.d_h != nullptr ? nt * static_cast<std::size_t>(rc_max * dim) : 0, T(0));
  std::vector<double> slice_max(nt * static_cast<std::size_t>(rc_max)), slice_sum(slice_max.size());
  std::vector<double> target_logit(static_cast<std::size_t>(rc_max)), lse(target_logit.size());
  std::vector<double> row_loss(static_cast<std::size_t>(p.rows));
  const auto wte = kernels::weight_view(p.wte, p.wte_bf16, vocab, dim);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    const std::int64_t v0 = slice_start(vocab, t, threads), v1 = slice_start(vocab, t + 1, threads), nv = v1 - v0;
    double* my_max = slice_max.data() + t * rc_max;
    double* my_sum = slice_sum.data() + t * rc_max;
    const auto wte_mine = wte.block(v0, 0, nv, dim);
    for (std::int64_t r0 = 0; r0 < p.rows; r0 += chunk_rows) {
      const std::int64_t rc = std::min(chunk_rows, p.rows - r0);
      const MatrixView<const T> h{p.h + r0 * dim, rc, dim, dim};
      const MatrixView<T> g{logits.data() + v0, rc, nv, vocab};  // my columns: logits, then d_logits
      gemm(Op::none, Op::trans, T(1), h, wte_mine, T(0), g);    // logits = h wte^T
      for (std::int64_t r = 0; r < rc; ++r) {
        T* row = g.row(r);
        if (p.softcap > 0)
          soft_cap(row, nv, static_cast<T>(p.softcap), capped.empty() ? nullptr : capped.data() + r * vocab + v0);
        const std::int32_t target = p.targets[r0 + r];
        if (target >= v0 && target < v1) target_logit[r] = static_cast<double>(row[target - v0]);
        const T max = nv > 0 ? *std::max_element(row, row + nv) : -std::numeric_limits<T>::infinity();
        my_max[r] = static_cast<double>(max);
        my_sum[r] = exp_and_sum(row, nv, max);
      }
#pragma omp barrier
#pragma omp for schedule(static)
      for (std::int64_t r = 0; r < rc; ++r) {
        double max = -std::numeric_limits<double>::infinity(), sum = 0;
        for (int s = 0; s < threads; ++s) max = std::max(max, slice_max[s * rc_max + r]);
        for (int s = 0; s < threads; ++s) sum += slice_sum[s * rc_max + r] * std::exp(slice_max[s * rc_max + r] - max);
        lse[r] = max + std::log(sum);
        row_loss[r0 + r] = lse[r] - target_logit[r];
      }  // implicit barrier: lse is complete
      if (p.d_h != nullptr) {
        // d_logits = (softmax - onehot) / rows, softmax = exp(logit - max) * exp(max - lse).
        for (std::int64_t r = 0; r < rc; ++r) {
          T* row = g.row(r);
          const T factor = static_cast<T>(std::exp(my_max[r] - lse[r]) * inv_rows);
          for (std::int64_t j = 0; j < nv; ++j) row[j] *= factor;
          const std::int32_t target = p.targets[r0 + r];
          if (target >= v0 && target < v1) row[target - v0] -= static_cast<T>(inv_rows);
          if (!capped.empty()) {  // d raw = d capped * (1 - tanh^2)
            const T* th = capped.data() + r * vocab + v0;
            for (std::int64_t j = 0; j < nv; ++j) row[j] *= T(1) - th[j] * th[j];
          }
        }
        const MatrixView<T> mine{d_h_partial.data() + t * rc_max * dim, rc, dim, dim};
        gemm(Op::none, Op::none, T(1), MatrixView<const T>(g), wte_mine, T(0), mine);  // d_h share = d_logits wte
        if (p.d_wte != nullptr)  // my rows of d_wte += d_logits^T h
          gemm(Op::trans, Op::none, T(1), MatrixView<const T>(g), h, r0 == 0 ? T(0) : T(1),
               MatrixView<T>{p.d_wte + v0 * dim, nv, dim, dim});
#pragma omp barrier
#pragma omp for schedule(static)
        for (std::int64_t i = 0; i < rc * dim; ++i) {
          T sum = 0;
          for (int s = 0; s < threads; ++s) sum += d_h_partial[static_cast<std::size_t>(s * rc_max * dim + i)];
          p.d_h[r0 * dim + i] = sum;
        }
      }
#pragma omp barrier
    }
  }
  double total = 0;
  for (double l : row_loss) total += l;
  return total * inv_rows;
}

template double lm_head_loss<float>(const LmHeadLossParams<float>&);
template double lm_head_loss<double>(const LmHeadLossParams<double>&);

}  // namespace lorafast
