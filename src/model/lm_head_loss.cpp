// Logits and their exponentials are formed in T; each row's sum of exponentials,
// log-sum-exp and loss are accumulated in double.
#include "model/lm_head_loss.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "kernels/exp.hpp"
#include "kernels/gemm.hpp"

namespace lorafast {

using kernels::gemm;
using kernels::Op;

namespace {

// Rows per chunk. Each GEMM call repacks all of wte (V x D: 154 MB for GPT-2, read
// from memory at a few GB/s), so chunks are tall: at 32 rows the packing took a
// third of the LM head's time, at 256 under a tenth, with each thread's logits at
// 256 * V values (51 MB for GPT-2). Fixed, so that results do not depend on the
// thread count.
constexpr std::int64_t chunk_rows = 256;

// Overwrites row[0, V) with exp(row - max) and returns (max, their sum): exp in T
// (kernels::exp_approx vectorizes in float), the sum in double over 8 lanes.
template <class T>
std::pair<T, double> exp_and_sum(T* row, std::int64_t vocab) {
  const T max = *std::max_element(row, row + vocab);
  for (std::int64_t j = 0; j < vocab; ++j) row[j] = kernels::exp_approx(row[j] - max);
  double lanes[8] = {};
  std::int64_t j = 0;
  for (; j + 8 <= vocab; j += 8)
    for (int l = 0; l < 8; ++l) lanes[l] += static_cast<double>(row[j + l]);
  double sum = 0;
  for (; j < vocab; ++j) sum += static_cast<double>(row[j]);
  for (double l : lanes) sum += l;
  return {max, sum};
}

}  // namespace

template <class T>
double lm_head_loss(const LmHeadLossParams<T>& p) {
  const std::int64_t chunks = (p.rows + chunk_rows - 1) / chunk_rows;
  std::vector<double> chunk_loss(static_cast<std::size_t>(chunks), 0.0);
  const MatrixView<const T> wte{p.wte, p.vocab, p.dim, p.dim};
  const double inv_rows = 1.0 / static_cast<double>(p.rows);
  const int threads = omp_get_max_threads();
  const std::size_t wte_size = p.d_wte != nullptr ? static_cast<std::size_t>(p.vocab * p.dim) : 0;
  std::vector<std::vector<T>> d_wte_partial(static_cast<std::size_t>(threads), std::vector<T>(wte_size));
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> logits(static_cast<std::size_t>(std::min(chunk_rows, p.rows) * p.vocab));
    const MatrixView<T> d_wte_mine{d_wte_partial[static_cast<std::size_t>(omp_get_thread_num())].data(), p.vocab,
                                   p.dim, p.dim};
#pragma omp for schedule(static)
    for (std::int64_t c = 0; c < chunks; ++c) {
      const std::int64_t r0 = c * chunk_rows, rows = std::min(chunk_rows, p.rows - r0);
      const MatrixView<T> lv{logits.data(), rows, p.vocab, p.vocab};
      const MatrixView<const T> h{p.h + r0 * p.dim, rows, p.dim, p.dim};
      gemm(Op::none, Op::trans, T(1), h, wte, T(0), lv);  // logits = h wte^T
      double loss = 0;
      for (std::int64_t r = 0; r < rows; ++r) {
        T* row = lv.row(r);
        const std::int32_t target = p.targets[r0 + r];
        const T target_logit = row[target];
        const auto [max, sum] = exp_and_sum(row, p.vocab);
        loss += static_cast<double>(max) + std::log(sum) - static_cast<double>(target_logit);
        if (p.d_h == nullptr) continue;
        // d_logits = softmax / rows - onehot / rows, the softmax from the stored exps.
        const T factor = static_cast<T>(inv_rows / sum);
        for (std::int64_t j = 0; j < p.vocab; ++j) row[j] *= factor;
        row[target] -= static_cast<T>(inv_rows);
      }
      chunk_loss[static_cast<std::size_t>(c)] = loss;
      if (p.d_h != nullptr)
        gemm(Op::none, Op::none, T(1), MatrixView<const T>(lv), wte, T(0),
             MatrixView<T>{p.d_h + r0 * p.dim, rows, p.dim, p.dim});  // d_h = d_logits wte
      if (p.d_wte != nullptr) gemm(Op::trans, Op::none, T(1), MatrixView<const T>(lv), h, T(1), d_wte_mine);
    }
  }
  if (p.d_wte != nullptr) {
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < p.vocab * p.dim; ++i) {
      T sum = 0;
      for (const auto& partial : d_wte_partial) sum += partial[static_cast<std::size_t>(i)];
      p.d_wte[i] = sum;
    }
  }
  double total = 0;
  for (double l : chunk_loss) total += l;
  return total * inv_rows;
}

template double lm_head_loss<float>(const LmHeadLossParams<float>&);
template double lm_head_loss<double>(const LmHeadLossParams<double>&);

}  // namespace lorafast
