// Rounding f32 matrices to bf16 in the layout of the bf16 dot-product instruction
// (PairTile, bf16_gemm.hpp): 32-bit words of two bf16 values that are neighbours
// along the summed dimension, the low half first, a missing partner 0. Pair rows:
// word (r, q) = (M(r, 2q), M(r, 2q + 1)), the left operand of a product summed over
// cols; row pairs: word (q, c) = (M(2q, c), M(2q + 1, c)), the right operand of a
// product summed over rows.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "lorafast/tensor.hpp"

namespace lorafast::kernels {

// m as pair rows into out (row stride ld words): each row in bf16, in order, padded
// with one zero when cols is odd. vcvtne2ps2bf16 rounds 32 values at a time to
// nearest even, as to_bf16 does (but for subnormals, which it flushes to zero); these
// run only where bf16_arithmetic(), like the products they feed.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) inline void to_pair_rows(MatrixView<const float> m,
                                                                              std::uint32_t* out, std::int64_t ld) {
  for (std::int64_t r = 0; r < m.rows; ++r) {
    const float* in = m.row(r);
    auto* dst = reinterpret_cast<std::uint16_t*>(out + r * ld);
    for (std::int64_t c = 0; c < m.cols; c += 32) {
      const std::int64_t n = std::min<std::int64_t>(32, m.cols - c), stored = (n + 1) & ~std::int64_t{1};
      const auto lo = _mm512_maskz_loadu_ps(static_cast<__mmask16>(n >= 16 ? 0xffff : (1u << n) - 1u), in + c);
      const auto hi = _mm512_maskz_loadu_ps(static_cast<__mmask16>(n >= 32 ? 0xffff : n > 16 ? (1u << (n - 16)) - 1u : 0u),
                                            in + c + 16);
      const auto both = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
      _mm512_mask_storeu_epi16(dst + c, static_cast<__mmask32>(stored == 32 ? 0xffffffffu : (1u << stored) - 1u), both);
    }
  }
}

// m as row pairs into out (row stride ld words): rows 2q and 2q + 1 rounded to bf16
// and interleaved, the low half from row 2q; a last odd row pairs with zeros.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) inline void to_row_pairs(MatrixView<const float> m,
                                                                              std::uint32_t* out, std::int64_t ld) {
  for (std::int64_t r = 0; r < m.rows; r += 2) {
    const float* lo = m.row(r);
    const float* hi = r + 1 < m.rows ? m.row(r + 1) : nullptr;
    std::uint32_t* dst = out + r / 2 * ld;
    for (std::int64_t c = 0; c < m.cols; c += 16) {
      const std::int64_t n = std::min<std::int64_t>(16, m.cols - c);
      const auto mask = static_cast<__mmask16>(n == 16 ? 0xffff : (1u << n) - 1u);
      const auto lo16 = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, lo + c));
      const auto hi16 = hi ? (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, hi + c)) : _mm256_setzero_si256();
      const auto words = _mm512_or_si512(_mm512_maskz_cvtepu16_epi32(0xffff, lo16),
                                         _mm512_maskz_slli_epi32(0xffff, _mm512_maskz_cvtepu16_epi32(0xffff, hi16), 16));
      _mm512_mask_storeu_epi32(dst + c, mask, words);
    }
  }
}

}  // namespace lorafast::kernels
