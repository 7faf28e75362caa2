// Tile geometry and per-(sequence, head) matrix views shared by the exact kernels.
#pragma once

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "lorafast/attention.hpp"
#include "lorafast/tensor.hpp"

namespace lorafast::exact {

// Query rows per work item and key columns per tile. A score tile (128 x 256 floats,
// 128 KiB) and its gradient stay in L2 between the GEMMs that produce and consume them.
constexpr std::int64_t block_rows = 128;
constexpr std::int64_t block_cols = 256;

// Rows [i0, i0 + rows) of head h of sequence n of a tensor with strides s.
template <class U>
MatrixView<U> head_rows(U* base, const HeadStrides& s, std::int64_t e, std::int64_t n, std::int64_t h,
                        std::int64_t i0, std::int64_t rows) {
  return {base + n * s.batch + h * s.head + i0 * s.row, rows, e, s.row};
}

// The same, by operand, for params that went through checked(): query-side views take
// the query head h, key-side views the K/V head g (p.kv_head(h) for query head h).
template <class T>
MatrixView<const T> q_rows(const AttentionParams<T>& p, std::int64_t n, std::int64_t h, std::int64_t i0, std::int64_t rows) {
  return head_rows(p.q, p.q_strides, p.head_dim, n, h, i0, rows);
}
template <class T>
MatrixView<T> o_rows(const AttentionParams<T>& p, std::int64_t n, std::int64_t h, std::int64_t i0, std::int64_t rows) {
  return head_rows(p.o, p.o_strides, p.head_dim, n, h, i0, rows);
}
template <class T>
MatrixView<const T> d_o_rows(const AttentionParams<T>& p, std::int64_t n, std::int64_t h, std::int64_t i0, std::int64_t rows) {
  return head_rows(p.d_o, p.d_o_strides, p.head_dim, n, h, i0, rows);
}
template <class T>
MatrixView<T> d_q_rows(const AttentionParams<T>& p, std::int64_t n, std::int64_t h, std::int64_t i0, std::int64_t rows) {
  return head_rows(p.d_q, p.d_q_strides, p.head_dim, n, h, i0, rows);
}
template <class T>
MatrixView<const T> k_rows(const AttentionParams<T>& p, std::int64_t n, std::int64_t g, std::int64_t j0, std::int64_t rows) {
  return head_rows(p.k, p.k_strides, p.head_dim, n, g, j0, rows);
}
template <class T>
MatrixView<const T> v_rows(const AttentionParams<T>& p, std::int64_t n, std::int64_t g, std::int64_t j0, std::int64_t rows) {
  return head_rows(p.v, p.v_strides, p.head_dim, n, g, j0, rows);
}
template <class T>
MatrixView<T> d_k_rows(const AttentionParams<T>& p, std::int64_t n, std::int64_t g, std::int64_t j0, std::int64_t rows) {
  return head_rows(p.d_k, p.d_k_strides, p.head_dim, n, g, j0, rows);
}
template <class T>
MatrixView<T> d_v_rows(const AttentionParams<T>& p, std::int64_t n, std::int64_t g, std::int64_t j0, std::int64_t rows) {
  return head_rows(p.d_v, p.d_v_strides, p.head_dim, n, g, j0, rows);
}

inline std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// The keys the rows of one query block see under causal, window and documents
// (AttentionParams): row r sees keys lo[r] <= j < hi[r], an interval holding its own
// key. Both ends grow with r, so the rows together see [lo[0], hi[rows - 1]) with no
// gap; the key tiles cover that from `first` (lo[0] rounded down to a multiple of 16
// keys, so tiles start on a cache line, and even, as the bf16 row pairs need) to `end`: a sliding window
// costs O(L W), and tiles across documents are never visited.
struct BlockKeys {
  static constexpr std::int64_t align = 16;
  std::int64_t rows = 0, first = 0, end = 0;
  std::array<std::int64_t, block_rows> lo{}, hi{};

  template <class T>
  BlockKeys(const AttentionParams<T>& p, std::int64_t n, std::int64_t i0, std::int64_t block)
      : rows(block) {
    const auto cu = p.cu_seqlens;
    const std::int64_t row_start = n * p.seq_len;
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t i = i0 + r;
      std::int64_t doc_lo = 0, doc_hi = p.seq_len;
      if (!cu.empty()) {
        const auto next = std::upper_bound(cu.begin(), cu.end(), row_start + i);  // c_d <= pos < *next
        doc_lo = next[-1] - row_start, doc_hi = *next - row_start;
      }
      lo[r] = p.window > 0 ? std::max(doc_lo, i - p.window + 1) : doc_lo;
      hi[r] = p.causal ? i + 1 : doc_hi;
    }
    first = lo[0] / align * align;
    end = hi[rows - 1];
  }

  // Whether some key of the tile [j0, j0 + cols) is hidden from some row.
  bool needs_mask(std::int64_t j0, std::int64_t cols) const { return lo[rows - 1] > j0 || hi[0] < j0 + cols; }
};

// A row stride of at least n elements that is an odd number of 64-byte cache lines,
// so that successive rows fall in different L1 sets (see head_copies.hpp).
template <class T>
std::int64_t padded_ld(std::int64_t n) {
  constexpr std::int64_t per_line = 64 / static_cast<std::int64_t>(sizeof(T));
  const std::int64_t lines = ceil_div(std::max<std::int64_t>(n, 1), per_line);
  return (lines | 1) * per_line;
}

// The work item that iteration i of a schedule(static, 1) loop over n items should
// run: items in back-and-forth order, so thread t of T gets t, 2T-1-t, 2T+t, ...
// Causal row blocks grow in cost with their index; plain round-robin gives the last
// thread one block's worth more per round (6% more work than thread 0 at T = 2 and
// L = 4096), while this order pairs cheap blocks with expensive ones.
// A trailing partial round stays in order so every item is run exactly once.
inline std::int64_t back_and_forth(std::int64_t i, std::int64_t threads, std::int64_t n) {
  const std::int64_t round = i / threads;
  if (round % 2 == 0 || (round + 1) * threads > n) return i;
  return round * threads + threads - 1 - i % threads;
}

// Runs block(ws, n, h, i0, rows) for every query block of every running head, shared
// across the threads in a static back-and-forth schedule (deterministic; balances
// causal row blocks), with one workspace ws = make_workspace() per thread.
template <class T, class MakeWorkspace, class Block>
void for_each_query_block(const AttentionParams<T>& p, MakeWorkspace make_workspace, Block block) {
  const std::int64_t row_blocks = ceil_div(p.seq_len, block_rows);
  const std::int64_t items = p.batch * p.heads * row_blocks;
#pragma omp parallel
  {
    auto ws = make_workspace();
#pragma omp for schedule(static, 1)
    for (std::int64_t i = 0; i < items; ++i) {
      const std::int64_t item = back_and_forth(i, omp_get_num_threads(), items);
      const std::int64_t n = item / (p.heads * row_blocks), h = item / row_blocks % p.heads;
      if (!p.runs(h)) continue;
      const std::int64_t i0 = item % row_blocks * block_rows;
      block(ws, n, h, i0, std::min(block_rows, p.seq_len - i0));
    }
  }
}

// The end of a forward query block: O = acc / l ([rows, E], acc contiguous) and the
// row log-sum-exp m + log l.
template <class T>
void write_output(const AttentionParams<T>& p, std::int64_t n, std::int64_t h, std::int64_t i0, std::int64_t rows,
                  const T* acc, const T* m, const T* l) {
  const auto o = o_rows(p, n, h, i0, rows);
  T* lse = p.lse + (n * p.heads + h) * p.seq_len + i0;
  for (std::int64_t r = 0; r < rows; ++r) {
    const T inv = T(1) / l[r];
    for (std::int64_t c = 0; c < p.head_dim; ++c) o(r, c) = acc[r * p.head_dim + c] * inv;
    lse[r] = m[r] + std::log(l[r]);
  }
}

}  // namespace lorafast::exact
