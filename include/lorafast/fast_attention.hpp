// Almost-linear attention through the Taylor surrogate of exp (SPEC.md §3.2-3.3),
// one head at a time (dispatch picks the method per head).
//
// The surrogate, for one (sequence, head), with centred scores s_ij = beta q_i.(k_j - c)
// (c = mean_key when center_keys: the mean key, or when causal the mean of the first
// chunk's keys, so that the surrogate stays causal; softmax is unchanged by a per-row
// constant):
//   bidirectional:  w_ij = T_g(s_ij) = <phi(q'_i), phi(k'_j)>
//   causal:         w_ij = exp(s_ij)  if j <= i and j is in i's chunk (rows [mC, mC + C)),
//                   w_ij = T_g(s_ij)  if j is in an earlier chunk,   0 otherwise
//   P~ = w / rowsum(w),  O~ = P~ V.
// q' = sqrt(beta) t q and k' = sqrt(beta) (k - c) / t with t balancing max|q'| = max|k'|.
//
// fast_attention_bwd is the exact gradient of the loss of O~ (SPEC §3.2b), through
// the centre c as well when keys are centred.
// chained_attention_bwd is the paper's route (§3.2a): the exact-gradient formula
// dS = P~ ∘ (dP - delta), delta = rowsum(dO ∘ O~), evaluated through thin factors.
// Both write d_q, d_k, d_v of the head's columns for every sequence, reading q, k, v,
// o (= O~ from fast_attention_fwd) and d_o of AttentionParams; lse is not used.
#pragma once

#include <cstdint>

#include "lorafast/attention.hpp"

namespace lorafast {

struct SurrogateConfig {
  int degree = 4;            // g, even
  bool center_keys = true;   // subtract the per-sequence centre (mean_key)
  std::int64_t chunk = 64;   // causal: C, rows per chunk
};

template <class T>
void fast_attention_fwd(const AttentionParams<T>& p, std::int64_t head, const SurrogateConfig& config);
template <class T>
void fast_attention_bwd(const AttentionParams<T>& p, std::int64_t head, const SurrogateConfig& config);
template <class T>
void chained_attention_bwd(const AttentionParams<T>& p, std::int64_t head, const SurrogateConfig& config);

}  // namespace lorafast
