// Exact multi-head attention forward and backward (SPEC.md §1-2), tiled
// FlashAttention-2 style: no L x L matrix is ever stored, memory is O(L * D).
#pragma once

#include <cstdint>
#include <span>

#include "lorafast/error.hpp"

namespace lorafast {

struct AttentionConfig {
  std::int64_t heads = 1;
  bool causal = false;
  double scale = 0.0;  // beta; 0 means the default 1/sqrt(E)
  double resolved_scale(std::int64_t head_dim) const;
};

// Element strides of a [N, L, heads, E] tensor whose E values of one (row, head) are
// contiguous. All zero (the default) means packed [N, L, heads * E]: head h owns
// columns h*E .. h*E+E-1. Strides let q, k, v be views into a fused projection
// ([N, L, 3D]) or an SDPA-layout [N, H, L, E] tensor, without copies.
struct HeadStrides {
  std::int64_t batch = 0, row = 0, head = 0;
  bool unset() const { return batch == 0 && row == 0 && head == 0; }
};

// One params struct for both directions (like FlashAttention's Flash_fwd_params).
// Query-side tensors (q, o, d_o, d_q) have H heads; key-side ones (k, v, d_k, d_v)
// have H_kv = kv_heads, which divides H: query head h reads K/V head h / (H / H_kv)
// (grouped-query attention; H_kv = H is multi-head attention).
template <class T>
struct AttentionParams {
  std::int64_t batch = 1;     // N
  std::int64_t seq_len = 0;   // L
  std::int64_t heads = 1;     // H
  std::int64_t kv_heads = 0;  // H_kv; 0 means H
  std::int64_t head_dim = 0;  // E
  double scale = 0.0;         // beta (resolved, > 0)
  bool causal = false;
  // Masks on top of `causal`, combinable; every query keeps its own key, so no row is
  // ever empty. The exact kernels skip the key tiles a mask empties.
  // window > 0 (needs causal): a sliding window, query i sees keys j with
  // i - window < j <= i (its last `window` keys, itself included). 0: none.
  std::int64_t window = 0;
  // Documents: each row packs several sequences that never attend across each other
  // (block-diagonal, causal or not inside a document). Offsets into the flattened
  // N * L positions, like FlashAttention's cu_seqlens: 0 = c_0 < c_1 < ... < c_D = N * L,
  // every row start n * L among them (no document crosses rows). Empty: one per row.
  std::span<const std::int64_t> cu_seqlens{};

  const T* q = nullptr;  // [N, L, H, E]
  const T* k = nullptr;  // [N, L, H_kv, E]
  const T* v = nullptr;  // [N, L, H_kv, E]
  T* o = nullptr;        // [N, L, H, E]  written by fwd, read by bwd
  T* lse = nullptr;      // [N, H, L] contiguous: row log-sum-exp of the scaled scores; fwd -> bwd
  const T* d_o = nullptr;  // [N, L, H, E]  bwd input
  T* d_q = nullptr;        // [N, L, H, E]  bwd outputs
  T* d_k = nullptr;        // [N, L, H_kv, E]
  T* d_v = nullptr;        // [N, L, H_kv, E]
  HeadStrides q_strides, k_strides, v_strides, o_strides, d_o_strides, d_q_strides, d_k_strides, d_v_strides;

  // [H]: the query heads this call computes (others are left untouched); nullptr:
  // all heads. Lets the dispatcher send each head to a different method.
  const bool* head_enabled = nullptr;
  // bwd: add into d_k, d_v instead of overwriting them, so that query heads sharing
  // a K/V head can be computed by separate calls (different methods).
  bool add_kv_grads = false;
  // f32 only, exact kernels: multiply in bf16 (PyTorch's bf16 flash attention): q, k,
  // v, d_o and the probability tiles P and dS are rounded to bf16 for the matrix
  // products, which sum in f32; scores, softmax statistics, lse, O and the dQ, dK, dV
  // accumulators stay f32. Where the CPU has no bf16 arithmetic (bf16_arithmetic()
  // false), the f32 products run instead: same inputs, more accurate.
  bool bf16_products = false;

  bool masked() const { return window > 0 || !cu_seqlens.empty(); }
  std::int64_t kv_head_count() const { return kv_heads == 0 ? heads : kv_heads; }
  std::int64_t group_size() const { return heads / kv_head_count(); }
  std::int64_t kv_head(std::int64_t h) const { return h / group_size(); }
  bool runs(std::int64_t h) const { return head_enabled == nullptr || head_enabled[h]; }
  // Whether some query head of K/V head g runs.
  bool runs_kv(std::int64_t g) const {
    for (std::int64_t h = g * group_size(); h < (g + 1) * group_size(); ++h)
      if (runs(h)) return true;
    return false;
  }
};

// What a call reads and writes: q, k (score bounds); also v, o (forward); also d_o,
// d_q, d_k, d_v (backward). lse is the exact kernels' own (they check it).
enum class AttentionUse { scores, forward, backward };

// Error(kind) starting "<what>: " unless `cu_seqlens` is empty or runs from 0 to
// rows * row_length in increasing steps through every row start (no document
// crosses a row): the documents of AttentionParams and of a model's token batch.
void check_cu_seqlens(std::span<const std::int64_t> cu_seqlens, std::int64_t rows, std::int64_t row_length,
                      ErrorKind kind, const char* what);

// Checks the tensors `use` needs and returns p with kv_heads and every unset stride
// filled in (the packed layout). Every entry point calls it; Error(usage) names the
// field at fault: a null tensor, a non-positive size, kv_heads not dividing heads, a
// scale that is not positive and finite, a negative stride, or output strides under
// which two rows or heads overlap, a negative window or one without causal, or
// cu_seqlens that do not run from 0 to N * L in increasing steps through every row start.
template <class T>
AttentionParams<T> checked(const AttentionParams<T>& p, AttentionUse use);

template <class T>
void attention_fwd(const AttentionParams<T>& params);
// Writes d_q of the heads that run, and d_k, d_v of each K/V head some running query
// head reads: the sum over those query heads (added to what is there when add_kv_grads).
template <class T>
void attention_bwd(const AttentionParams<T>& params);

}  // namespace lorafast
