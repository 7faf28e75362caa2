// The tied LM head and the mean next-token cross-entropy, fused and computed in
// chunks of rows so that at most (threads * chunk) x V logits exist at a time:
//   logits = h wte^T,   loss = mean_r (logsumexp(logits_r) - logits_r[target_r])
//   d_h = ((softmax(logits) - onehot(target)) / rows) wte
#pragma once

#include <cstdint>

namespace lorafast {

template <class T>
struct LmHeadLossParams {
  std::int64_t rows = 0;   // N * T predicted tokens
  std::int64_t dim = 0;    // D
  std::int64_t vocab = 0;  // V
  const T* h = nullptr;    // [rows, D]  final (ln_f) hidden states
  const T* wte = nullptr;  // [V, D]
  const std::int32_t* targets = nullptr;  // [rows], in [0, V)
  T* d_h = nullptr;        // [rows, D]  overwritten with d loss / d h; nullptr: forward only
};

// The mean cross-entropy in nats; per-chunk sums are added in chunk order, so the
// result does not depend on the thread count.
template <class T>
double lm_head_loss(const LmHeadLossParams<T>& p);

}  // namespace lorafast
