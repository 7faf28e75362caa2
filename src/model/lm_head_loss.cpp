// Logits are formed in T; each row's log-sum-exp and loss are accumulated in double.
#include "model/lm_head_loss.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/gemm.hpp"

namespace lorafast {

using kernels::gemm;
using kernels::Op;

namespace {
constexpr std::int64_t chunk_rows = 32;
}

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
    std::vector<T> logits(static_cast<std::size_t>(chunk_rows * p.vocab));
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
        const T max = *std::max_element(row, row + p.vocab);
        double sum = 0;
        for (std::int64_t j = 0; j < p.vocab; ++j) sum += std::exp(static_cast<double>(row[j] - max));
        const double lse = static_cast<double>(max) + std::log(sum);
        const std::int32_t target = p.targets[r0 + r];
        loss += lse - static_cast<double>(row[target]);
        if (p.d_h == nullptr) continue;
        for (std::int64_t j = 0; j < p.vocab; ++j)
          row[j] = static_cast<T>(std::exp(static_cast<double>(row[j]) - lse) * inv_rows);
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
