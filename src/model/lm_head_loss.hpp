// The tied LM head and the mean next-token cross-entropy, fused and computed in
// chunks of rows so that at most (threads * chunk) x V logits exist at a time:
//   logits = h wte^T,   loss = mean_r (logsumexp(logits_r) - logits_r[target_r])
//   d_h = d_logits wte,   d_wte = d_logits^T h,   d_logits = (softmax(logits) - onehot(target)) / rows
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
  T* d_wte = nullptr;      // [V, D]     overwritten with the LM head's share of d loss / d wte; needs d_h
};

// The mean cross-entropy in nats; per-chunk sums are added in chunk order, so the
// result does not depend on the thread count. d_wte is a sum over all rows: each
// thread accumulates its (static, contiguous) chunks into a private [V, D] copy and
// the copies are added in thread order, so it is deterministic per thread count;
// scratch is threads * V * D values.
template <class T>
double lm_head_loss(const LmHeadLossParams<T>& p);

}  // namespace lorafast
