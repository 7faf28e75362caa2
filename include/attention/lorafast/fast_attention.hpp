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
// Both write d_q of the query head and d_k, d_v of its K/V head for every sequence
// (added to what is there when add_kv_grads, which grouped heads require: each query
// head of a group adds its share), reading q, k, v, o (= O~ from fast_attention_fwd)
// and d_o of AttentionParams; lse is not used.
#pragma once

#include <cstdint>
#include <vector>

#include "lorafast/attention.hpp"

namespace lorafast {

// The causal fast path's chunk C (SPEC §3.3) that planned attention runs with: rows
// of exact attention per chunk. Measured on L = 32768, E = 8, degrees 4 and 6 over C
// in {32, 64, 128, 256}.
constexpr std::int64_t causal_chunk = 128;

struct SurrogateConfig {
  int degree = 4;            // g, even
  bool center_keys = true;   // subtract the per-sequence centre (mean_key)
  std::int64_t chunk = 64;   // causal: C, rows per chunk
};

// How many leading keys the centre c averages: all L when bidirectional; when causal,
// the first chunk's min(C, L) (C = the surrogate's chunk). Rows of the first chunk
// weigh their keys exactly, where the shift by beta q_i.c cancels, and every later row
// has seen all of those keys: no row's surrogate depends on a key after it.
std::int64_t centred_keys(std::int64_t seq_len, bool causal, std::int64_t chunk);

// Centre c of sequence n, K/V head g: the mean of its first centred_keys(L, causal, chunk)
// keys, [E], accumulated in double. Softmax is invariant to the per-row shift
// beta q_i.c (also under the causal mask), so a fast path that maps k_j - c instead
// of k_j computes the same attention and is covered by HeadScores::score_bound.
template <class T>
std::vector<double> mean_key(const AttentionParams<T>& params, std::int64_t n, std::int64_t g, std::int64_t chunk);

template <class T>
void fast_attention_fwd(const AttentionParams<T>& p, std::int64_t head, const SurrogateConfig& config);
template <class T>
void fast_attention_bwd(const AttentionParams<T>& p, std::int64_t head, const SurrogateConfig& config);
template <class T>
void chained_attention_bwd(const AttentionParams<T>& p, std::int64_t head, const SurrogateConfig& config);

}  // namespace lorafast
