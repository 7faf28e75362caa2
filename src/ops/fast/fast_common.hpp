// Pieces shared by the bidirectional and causal fast paths (SPEC §3.2b): values with a
// column of ones appended, so one GEMM with the feature state [F, E+1] = Fk^T [V | 1]
// yields the numerator and the normaliser together; and row-block loops with
// per-thread partial sums (deterministic for a given thread count).
#pragma once

#include <omp.h>

#include <algorithm>
#include <vector>

#include "lorafast/attention.hpp"
#include "core/line_vector.hpp"
#include "lorafast/features.hpp"
#include "ops/exact/head_views.hpp"

namespace lorafast::fast {

// [V | 1] of query head h's K/V head for sequence n: [L, E+1].
template <class T>
std::vector<T> values_with_ones(const AttentionParams<T>& p, std::int64_t n, std::int64_t h) {
  const std::int64_t l = p.seq_len, e = p.head_dim;
  const auto v = exact::v_rows(p, n, p.kv_head(h), 0, l);
  std::vector<T> out(static_cast<std::size_t>(l * (e + 1)));
  for (std::int64_t i = 0; i < l; ++i) {
    for (std::int64_t m = 0; m < e; ++m) out[i * (e + 1) + m] = v(i, m);
    out[i * (e + 1) + e] = T(1);
  }
  return out;
}

// Runs body(block, partial) for blocks 0..count-1 on all threads, each thread adding
// into its own zeroed `size`-element partial; returns the partials summed in thread order.
template <class T, class Body>
std::vector<T> blocks_with_partial_sums(std::int64_t count, std::int64_t size, Body body) {
  const int threads = omp_get_max_threads();
  std::vector<std::vector<T>> partial(threads, std::vector<T>(static_cast<std::size_t>(size)));
#pragma omp parallel num_threads(threads)
  {
    auto& mine = partial[omp_get_thread_num()];
#pragma omp for schedule(static)
    for (std::int64_t b = 0; b < count; ++b) body(b, mine.data());
  }
  for (int t = 1; t < threads; ++t)
    for (std::int64_t i = 0; i < size; ++i) partial[0][i] += partial[t][i];
  return std::move(partial[0]);
}

// Replaces the `count` consecutive states (each `state` entries) by their exclusive
// prefix sums, or suffix sums when `reverse`. Parallel over slices of the entries.
template <class T>
void exclusive_scan(T* states, std::int64_t count, std::int64_t state, bool reverse) {
  constexpr std::int64_t slice = 1024;
#pragma omp parallel for schedule(static)
  for (std::int64_t i0 = 0; i0 < state; i0 += slice) {
    const std::int64_t width = std::min(slice, state - i0);
    T running[slice] = {};
    for (std::int64_t step = 0; step < count; ++step) {
      T* s = states + (reverse ? count - 1 - step : step) * state + i0;
      for (std::int64_t i = 0; i < width; ++i) {
        const T own = s[i];
        s[i] = running[i];
        running[i] += own;
      }
    }
  }
}

// Writes (or adds) factor * d_t^T into out ([rows, E]); d_t is a gradient in column
// layout, [E, rows].
template <class T>
void store_columns(MatrixView<T> out, std::type_identity_t<MatrixView<const T>> d_t, T factor,
                   bool accumulate = false) {
  for (std::int64_t r = 0; r < d_t.cols; ++r)
    for (std::int64_t m = 0; m < out.cols; ++m) out(r, m) = (accumulate ? out(r, m) : T(0)) + factor * d_t(m, r);
}

}  // namespace lorafast::fast

namespace lorafast::fast {

// Whole 64-byte lines of T covering n elements.
template <class T>
std::int64_t padded_width(std::int64_t n) {
  constexpr std::int64_t line = 64 / sizeof(T);
  return (n + line - 1) / line * line;
}

// A per-thread scratch buffer (slot 0..11) of at least n elements, starting on a
// 64-byte line, reused across calls so the hot loops never allocate. A slot's pointer
// is valid until the next request of the same slot: live buffers must use distinct slots.
template <class T>
T* scratch(int slot, std::int64_t n) {
  thread_local LineVector<T> buffers[12];
  auto& b = buffers[slot];
  if (static_cast<std::int64_t>(b.size()) < n) b.resize(static_cast<std::size_t>(n));
  return b.data();
}

// A [rows, cols] scratch block whose rows start on 64-byte lines.
template <class T>
MatrixView<T> padded_block(int slot, std::int64_t rows, std::int64_t cols) {
  const std::int64_t ld = padded_width<T>(cols);
  return {scratch<T>(slot, rows * ld), rows, cols, ld};
}

// Column layout (features.hpp, state_products.hpp): a block of `rows` rows is stored
// as `width` = padded_width(rows) columns, so that SIMD loops need no tails.
template <class T>
MatrixView<T> column_block(int slot, std::int64_t rows, std::int64_t width) {
  return {scratch<T>(slot, rows * width), rows, width, width};
}

template <class T>
MatrixView<T> zeroed_columns(int slot, std::int64_t rows, std::int64_t width) {
  const auto out = column_block<T>(slot, rows, width);
  std::fill(out.data, out.data + rows * width, T(0));
  return out;
}

// x^T ([cols, width]) in column layout, its padding columns zero.
template <class T>
MatrixView<T> transposed(MatrixView<const T> x, int slot) {
  const auto out = zeroed_columns<T>(slot, x.cols, padded_width<T>(x.rows));
  for (std::int64_t r = 0; r < x.rows; ++r)
    for (std::int64_t m = 0; m < x.cols; ++m) out(m, r) = x(r, m);
  return out;
}

// The output-side gradients of O = Num / z for rows [i0, i0 + rows): with delta =
// dO.O (O as stored by the forward), d[Num | z] = [dO / z | -delta / z]; z: [rows].
template <class T>
void numerator_grads(const AttentionParams<T>& p, std::int64_t n, std::int64_t h, std::int64_t i0, const T* z,
                     MatrixView<T> d_nz) {
  const std::int64_t e = p.head_dim;
  const MatrixView<const T> o = exact::o_rows(p, n, h, i0, d_nz.rows);
  const auto d_o = exact::d_o_rows(p, n, h, i0, d_nz.rows);
  for (std::int64_t r = 0; r < d_nz.rows; ++r) {
    const T inv_z = T(1) / z[r];
    T delta = 0;
    for (std::int64_t m = 0; m < e; ++m) {
      delta += d_o(r, m) * o(r, m);
      d_nz(r, m) = d_o(r, m) * inv_z;
    }
    d_nz(r, e) = -delta * inv_z;
  }
}

// O = Num / z into the head's columns of rows [i0, i0 + rows).
template <class T>
void store_output(const AttentionParams<T>& p, std::int64_t n, std::int64_t h, std::int64_t i0,
                  std::type_identity_t<MatrixView<const T>> nz) {
  const std::int64_t e = p.head_dim;
  const auto o = exact::o_rows(p, n, h, i0, nz.rows);
  for (std::int64_t r = 0; r < nz.rows; ++r) {
    const T inv_z = T(1) / nz(r, e);
    for (std::int64_t m = 0; m < e; ++m) o(r, m) = nz(r, m) * inv_z;
  }
}

}  // namespace lorafast::fast
