// Element-wise work on score tiles between the GEMMs of the tiled attention kernels.
// A tile is `rows` x `cols` with leading dimension `ld`; row r is query i0 + r and
// column c is key j0 + c. Loops are written to auto-vectorize (see exp.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "kernels/exp.hpp"

namespace lorafast::kernels {

// Sets s[r][c] = -inf where key j0 + c lies outside row r's visible keys
// [lo[r], hi[r]) (the causal, window and document masks).
template <class T>
void mask_outside(T* s, std::int64_t ld, std::int64_t rows, std::int64_t cols, std::int64_t j0,
                  const std::int64_t* lo, const std::int64_t* hi) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t begin = std::clamp<std::int64_t>(lo[r] - j0, 0, cols);
    const std::int64_t end = std::clamp<std::int64_t>(hi[r] - j0, begin, cols);
    std::fill(s + r * ld, s + r * ld + begin, -std::numeric_limits<T>::infinity());
    std::fill(s + r * ld + end, s + r * ld + cols, -std::numeric_limits<T>::infinity());
  }
}

// Online softmax step (FlashAttention-2): folds the tile into the running row max m,
// normaliser l and output accumulator acc ([rows, acc_cols], leading dim acc_ld).
// On return the tile holds exp(s - m_new), ready for acc += P V.
template <class T>
void online_softmax_step(T* s, std::int64_t ld, std::int64_t rows, std::int64_t cols, T* m, T* l,
                         T* acc, std::int64_t acc_ld, std::int64_t acc_cols) {
  for (std::int64_t r = 0; r < rows; ++r) {
    T* row = s + r * ld;
    T row_max = m[r];
#pragma omp simd reduction(max : row_max)
    for (std::int64_t c = 0; c < cols; ++c) row_max = row[c] > row_max ? row[c] : row_max;
    // A row whose keys are all masked so far keeps m = -inf; its tile is all zeros.
    const T shift = row_max == -std::numeric_limits<T>::infinity() ? T(0) : row_max;
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (std::int64_t c = 0; c < cols; ++c) {
      row[c] = exp_approx(row[c] - shift);
      sum += row[c];
    }
    const T correction = exp_approx(m[r] - shift);  // 0 on the first tile (m = -inf)
    l[r] = l[r] * correction + sum;
    m[r] = row_max;
    T* acc_row = acc + r * acc_ld;
#pragma omp simd
    for (std::int64_t c = 0; c < acc_cols; ++c) acc_row[c] *= correction;
  }
}

// P = exp(s - lse[r]) in place: the probabilities recomputed in the backward pass.
template <class T>
void exp_minus_row(T* s, std::int64_t ld, std::int64_t rows, std::int64_t cols, const T* lse) {
  for (std::int64_t r = 0; r < rows; ++r) {
    T* row = s + r * ld;
    const T shift = lse[r];
#pragma omp simd
    for (std::int64_t c = 0; c < cols; ++c) row[c] = exp_approx(row[c] - shift);
  }
}

// dS = P ∘ (dP - delta[r]) in place over dP.
template <class T>
void softmax_grad(T* d_p, const T* p, std::int64_t ld, std::int64_t rows, std::int64_t cols,
                  const T* delta) {
  for (std::int64_t r = 0; r < rows; ++r) {
    T* dp_row = d_p + r * ld;
    const T* p_row = p + r * ld;
    const T dr = delta[r];
#pragma omp simd
    for (std::int64_t c = 0; c < cols; ++c) dp_row[c] = p_row[c] * (dp_row[c] - dr);
  }
}

}  // namespace lorafast::kernels
