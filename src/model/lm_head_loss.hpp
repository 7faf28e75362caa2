// The tied LM head and the mean next-token cross-entropy, fused and computed in
// chunks of rows so that at most chunk x V logits exist at a time (512 x V):
//   logits = h wte^T,   loss = sum_r (logsumexp(logits_r) - logits_r[target_r]) / normalizer
//   d_h = d_logits wte,   d_wte = d_logits^T h,   d_logits = (softmax(logits) - onehot(target)) / normalizer
// (with soft-capping, logits = c tanh(h wte^T / c) and d_logits times 1 - tanh^2).
#pragma once

#include <cmath>
#include <cstdint>

#include "lorafast/bf16.hpp"

namespace lorafast {

template <class T>
struct LmHeadLossParams {
  std::int64_t rows = 0;   // N * T predicted tokens
  std::int64_t dim = 0;    // D
  std::int64_t vocab = 0;  // V
  const T* h = nullptr;    // [rows, D]  final (ln_f) hidden states
  const T* wte = nullptr;  // [V, D] (or nullptr with wte_bf16)
  const std::int32_t* targets = nullptr;  // [rows], in [0, V)
  T* d_h = nullptr;        // [rows, D]  overwritten with d loss / d h; nullptr: forward only
  T* d_wte = nullptr;      // [V, D]     overwritten with the LM head's share of d loss / d wte; needs d_h
  // wte in bf16 instead (T = float): h and d_logits are rounded to bf16 for their products with it.
  const BFloat16* wte_bf16 = nullptr;
  // The summed row losses are divided by this (and d_logits by it): 0 means rows.
  std::int64_t normalizer = 0;
  // c > 0: the logits are soft-capped, c tanh(logits / c) (Gemma 3's
  // final_logit_softcapping), and d_logits carries the factor 1 - tanh^2.
  double softcap = 0;
};

// x[0, n) = c tanh(x / c) (transformers: logits / c, tanh, * c), the tanh also to
// `tanh_out` when not nullptr.
template <class T>
void soft_cap(T* x, std::int64_t n, T c, T* tanh_out = nullptr) {
  for (std::int64_t j = 0; j < n; ++j) {
    const T t = std::tanh(x[j] / c);
    if (tanh_out != nullptr) tanh_out[j] = t;
    x[j] = t * c;
  }
}

// The summed cross-entropy over `normalizer` (by default the mean) in nats.
// Threads split the vocabulary (static slices), so
// the result is deterministic per thread count, and a different count only
// reorders sums: each row's log-sum-exp combines the slices' partial sums, d_h adds
// the slices' partial products in thread order, and d_wte (each row owned by one
// slice) adds the chunks in row order.
template <class T>
double lm_head_loss(const LmHeadLossParams<T>& p);

}  // namespace lorafast
