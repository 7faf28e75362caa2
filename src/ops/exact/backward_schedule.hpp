// How the exact backward shares its work across threads, for any kernel that
// computes one query block: `kernel.workspace()` makes a thread's buffers and
// `kernel.block(ws, n, h, i0, d_k, d_v)` writes the dQ rows of query block i0 of head h
// of sequence n and adds its share into d_k, d_v (views of all L rows of its K/V
// head). dQ rows belong to one work item; dK and dV gather contributions from every
// query block, so they are either owned by one thread per (sequence, K/V head) or,
// when there are too few of those to keep every core busy, accumulated per thread and
// summed in thread order (deterministic for a given thread count).
#pragma once

#include <omp.h>

#include <algorithm>
#include <vector>

#include "core/scratch.hpp"
#include "ops/exact/head_views.hpp"

namespace lorafast::exact {

// The start of a query block: delta = rowsum(dO ∘ O) of its rows, and its dQ rows zeroed.
template <class T>
void start_block(const AttentionParams<T>& p, std::int64_t n, std::int64_t h, std::int64_t i0, std::int64_t rows,
                 T* delta) {
  const auto d_o = d_o_rows(p, n, h, i0, rows);
  const MatrixView<const T> o = o_rows(p, n, h, i0, rows);
  const auto d_q = d_q_rows(p, n, h, i0, rows);
  for (std::int64_t r = 0; r < rows; ++r) {
    T dot = 0;
    for (std::int64_t c = 0; c < p.head_dim; ++c) dot += d_o(r, c) * o(r, c);
    delta[r] = dot;
    for (std::int64_t c = 0; c < p.head_dim; ++c) d_q(r, c) = 0;
  }
}

template <class T>
void zero(MatrixView<T> m) {
  for (std::int64_t r = 0; r < m.rows; ++r) std::fill(m.row(r), m.row(r) + m.cols, T(0));
}

// Enough (sequence, K/V head) pairs to share out whole: each thread owns its pairs'
// dK, dV and runs every query head of the group into them.
template <class T, class Kernel>
void backward_by_head(const AttentionParams<T>& p, const Kernel& kernel) {
  const std::int64_t row_blocks = ceil_div(p.seq_len, block_rows), kv_heads = p.kv_head_count();
#pragma omp parallel
  {
    auto ws = kernel.workspace();
#pragma omp for schedule(static, 1)
    for (std::int64_t pair = 0; pair < p.batch * kv_heads; ++pair) {
      const std::int64_t n = pair / kv_heads, g = pair % kv_heads;
      if (!p.runs_kv(g)) continue;
      const auto d_k = d_k_rows(p, n, g, 0, p.seq_len), d_v = d_v_rows(p, n, g, 0, p.seq_len);
      if (!p.add_kv_grads) {
        zero(d_k);
        zero(d_v);
      }
      for (std::int64_t h = g * p.group_size(); h < (g + 1) * p.group_size(); ++h)
        if (p.runs(h))
          for (std::int64_t b = 0; b < row_blocks; ++b) kernel.block(ws, n, h, b * block_rows, d_k, d_v);
    }
  }
}

// Few K/V heads, long sequences: the query blocks of one group are shared across
// threads, each accumulating into private [L, E] dK, dV buffers that are then summed.
template <class T, class Kernel>
void backward_by_row_block(const AttentionParams<T>& p, const Kernel& kernel) {
  const std::int64_t row_blocks = ceil_div(p.seq_len, block_rows), kv_heads = p.kv_head_count();
  const std::int64_t len = p.seq_len * p.head_dim, group = p.group_size();
  const int threads = omp_get_max_threads();
  std::vector<Scratch<T>> k_acc, v_acc;
  for (int t = 0; t < threads; ++t) k_acc.emplace_back(len), v_acc.emplace_back(len);
  for (std::int64_t pair = 0; pair < p.batch * kv_heads; ++pair) {
    const std::int64_t n = pair / kv_heads, g = pair % kv_heads;
    if (!p.runs_kv(g)) continue;
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num();
      const MatrixView<T> d_k{k_acc[t].data(), p.seq_len, p.head_dim, p.head_dim};
      const MatrixView<T> d_v{v_acc[t].data(), p.seq_len, p.head_dim, p.head_dim};
      zero(d_k);
      zero(d_v);
      auto ws = kernel.workspace();
      // Items: (query head of the group, row block), row blocks in back-and-forth order.
#pragma omp for schedule(static, 1)
      for (std::int64_t i = 0; i < group * row_blocks; ++i) {
        const std::int64_t item = back_and_forth(i, omp_get_num_threads(), group * row_blocks);
        const std::int64_t h = g * group + item / row_blocks;
        if (p.runs(h)) kernel.block(ws, n, h, item % row_blocks * block_rows, d_k, d_v);
      }
      const auto out_k = d_k_rows(p, n, g, 0, p.seq_len), out_v = d_v_rows(p, n, g, 0, p.seq_len);
#pragma omp for schedule(static)
      for (std::int64_t r = 0; r < p.seq_len; ++r)
        for (std::int64_t c = 0; c < p.head_dim; ++c) {
          T k_sum = p.add_kv_grads ? out_k(r, c) : T(0), v_sum = p.add_kv_grads ? out_v(r, c) : T(0);
          for (int u = 0; u < threads; ++u) {
            k_sum += k_acc[u][r * p.head_dim + c];
            v_sum += v_acc[u][r * p.head_dim + c];
          }
          out_k(r, c) = k_sum;
          out_v(r, c) = v_sum;
        }
    }
  }
}

// Runs the backward of every running head through kernel.
template <class T, class Kernel>
void run_backward(const AttentionParams<T>& p, const Kernel& kernel) {
  const std::int64_t pairs = p.batch * p.kv_head_count();
  const int threads = omp_get_max_threads();
  if (pairs % threads == 0 || pairs >= 4 * threads)
    backward_by_head(p, kernel);
  else
    backward_by_row_block(p, kernel);
}

}  // namespace lorafast::exact
