// Exact multi-head attention forward and backward (SPEC.md §1-2), tiled
// FlashAttention-2 style: no L x L matrix is ever stored, memory is O(L * D).
#pragma once

#include <cstdint>

namespace lorafast {

struct AttentionConfig {
  std::int64_t heads = 1;
  bool causal = false;
  double scale = 0.0;  // beta; 0 means the default 1/sqrt(E)
  double resolved_scale(std::int64_t head_dim) const;
};

// One params struct for both directions (like FlashAttention's Flash_fwd_params).
// All matrices are row-major [N, L, D] with D = H * E; head h owns columns h*E..h*E+E-1.
template <class T>
struct AttentionParams {
  std::int64_t batch = 1;     // N
  std::int64_t seq_len = 0;   // L
  std::int64_t heads = 1;     // H
  std::int64_t head_dim = 0;  // E
  double scale = 0.0;         // beta (resolved, > 0)
  bool causal = false;

  const T* q = nullptr;  // [N, L, D]
  const T* k = nullptr;  // [N, L, D]
  const T* v = nullptr;  // [N, L, D]
  T* o = nullptr;        // [N, L, D]  written by fwd, read by bwd
  T* lse = nullptr;      // [N, H, L]  row log-sum-exp of the scaled scores; fwd -> bwd
  const T* d_o = nullptr;  // [N, L, D]  bwd input
  T* d_q = nullptr;        // [N, L, D]  bwd outputs
  T* d_k = nullptr;
  T* d_v = nullptr;

  // [H]: the heads this call computes (others are left untouched); nullptr: all heads.
  // Lets the dispatcher send each head to a different method.
  const bool* head_enabled = nullptr;

  std::int64_t model_dim() const { return heads * head_dim; }
  bool runs(std::int64_t h) const { return head_enabled == nullptr || head_enabled[h]; }
};

template <class T>
void attention_fwd(const AttentionParams<T>& params);
template <class T>
void attention_bwd(const AttentionParams<T>& params);

}  // namespace lorafast
