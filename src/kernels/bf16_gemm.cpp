// The bf16 GEMM (bf16_gemm.hpp). vdpbf16ps adds, in each f32 lane i, the products of
// the bf16 pairs (2i, 2i+1) of its two operands: so op(A) is packed as rows of k-pairs
// (one 32-bit word per pair, broadcast to every lane) and op(B) as panels of 64
// columns in which each word holds the pair of consecutive k of one column. A block of
// C of 6 rows by 4 vectors of 16 columns stays in registers while k runs (24 of 32
// zmm), as in the f32 tile GEMM. A k block of 128 pairs keeps one B panel (32 KiB)
// in L1 while every row block of A passes over it. Packing costs O(MK + KN) against
// the product's O(MKN), and makes transposed and odd-k operands the same case (an odd
// last k is paired with zero).
#include "kernels/bf16_gemm.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/scratch.hpp"
#include "kernels/bf16_pairs.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LORAFAST_BF16_KERNEL 1
#endif

namespace lorafast {

namespace {
// LORAFAST_BF16_ARITHMETIC=0 starts the process with it off (to run the fallback on
// a CPU that has it: tests, comparisons).
bool enabled_at_start() {
  const char* v = std::getenv("LORAFAST_BF16_ARITHMETIC");
  return v == nullptr || std::strcmp(v, "0") != 0;
}
std::atomic<bool> bf16_enabled{enabled_at_start()};
}  // namespace

bool cpu_has_bf16_arithmetic() {
#ifdef LORAFAST_BF16_KERNEL
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

bool bf16_arithmetic() { return bf16_enabled.load(std::memory_order_relaxed) && cpu_has_bf16_arithmetic(); }

void set_bf16_arithmetic(bool on) { bf16_enabled.store(on, std::memory_order_relaxed); }

namespace kernels {

void to_bf16(std::span<const float> in, std::span<BFloat16> out) {
  LF_ASSERT(in.size() == out.size());
  for (std::size_t i = 0; i < in.size(); ++i) out[i] = lorafast::to_bf16(in[i]);
}

namespace {

// op(M)(i, p).
BFloat16 at(MatrixView<const BFloat16> m, Op op, std::int64_t i, std::int64_t p) {
  return op == Op::none ? m(i, p) : m(p, i);
}

// Widens op(M) (a rows x cols window) into a dense f32 matrix.
void widen(MatrixView<const BFloat16> m, Op op, std::int64_t rows, std::int64_t cols, float* out) {
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t p = 0; p < cols; ++p) out[i * cols + p] = to_f32(at(m, op, i, p));
}

void gemm_widened(Op op_a, Op op_b, float alpha, MatrixView<const BFloat16> a, MatrixView<const BFloat16> b,
                  float beta, MatrixView<float> c, std::int64_t k) {
  const Scratch<float> a32(c.rows * k), b32(k * c.cols);
  widen(a, op_a, c.rows, k, a32.data());
  widen(b, op_b, k, c.cols, b32.data());
  gemm(Op::none, Op::none, alpha, MatrixView<const float>{a32.data(), c.rows, k, k},
       MatrixView<const float>{b32.data(), k, c.cols, c.cols}, beta, c);
}

#ifdef LORAFAST_BF16_KERNEL

constexpr std::int64_t lanes = 16, block_v = 4, panel_cols = lanes * block_v, block_m = 6;
constexpr std::int64_t block_k = 256, block_rows = 16 * block_m, block_cols = 16 * panel_cols;

std::uint32_t pair(BFloat16 lo, BFloat16 hi) { return std::uint32_t{lo.bits} | std::uint32_t{hi.bits} << 16; }

// Writes word(q, j) = (M(2q, j), M(2q+1, j)) for q < (depth + 1) / 2, j < cols into
// out[q * out_q + j * out_j], where M(p, j) = m[p * step_p + j * step_j] for p < depth
// and 0 past it. The inner loop runs along j (contiguous when step_j = out_j = 1).
void pack_pairs(const BFloat16* m, std::int64_t step_p, std::int64_t step_j, std::int64_t depth, std::int64_t cols,
                std::uint32_t* out, std::int64_t out_q, std::int64_t out_j) {
  for (std::int64_t q = 0; 2 * q < depth; ++q) {
    const BFloat16* lo = m + 2 * q * step_p;
    std::uint32_t* dst = out + q * out_q;
    if (2 * q + 1 == depth)
      for (std::int64_t j = 0; j < cols; ++j) dst[j * out_j] = pair(lo[j * step_j], BFloat16{});
    else
      for (std::int64_t j = 0; j < cols; ++j) dst[j * out_j] = pair(lo[j * step_j], lo[j * step_j + step_p]);
  }
}

__mmask16 first_lanes(std::int64_t n) { return static_cast<__mmask16>(n >= 16 ? 0xffff : (1u << n) - 1u); }

// r[i] = row i of a 16 x 16 matrix of words becomes column i.
__attribute__((target("avx512f"))) void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
  }
}

// pack_pairs for one panel of B, 16 words at a time (op trans: ld even, m 4-byte aligned):
// B [k, n] (op none) interleaves two rows' 16 values; B [n, k] (op trans) holds each
// column's pairs as words of its row, so 16 x 16 blocks of words are transposed.
__attribute__((target("avx512f"))) void pack_panel(const BFloat16* m, Op op, std::int64_t ld, std::int64_t depth,
                                                   std::int64_t cols, std::uint32_t* out) {
  const std::int64_t pairs = (depth + 1) / 2;
  if (op == Op::none) {
    for (std::int64_t q = 0; q < pairs; ++q)
      for (std::int64_t j = 0; j < cols; j += 16) {
        const __mmask16 mask = first_lanes(cols - j);
        const BFloat16* lo = m + 2 * q * ld + j;
        const __m512i l = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, lo));
        const __m512i h = 2 * q + 1 == depth ? _mm512_setzero_si512()  // the odd last k pairs with zero
                                             : _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, lo + ld));
        _mm512_mask_storeu_epi32(out + q * panel_cols + j, mask, _mm512_or_si512(l, _mm512_slli_epi32(h, 16)));
      }
    return;
  }
  const std::int64_t whole = depth / 2;  // words with both values inside the block
  for (std::int64_t j = 0; j < cols; j += 16)
    for (std::int64_t q0 = 0; q0 < whole; q0 += 16) {
      const __mmask16 words = first_lanes(whole - q0), columns = first_lanes(cols - j);
      __m512i r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = j + i < cols ? _mm512_maskz_loadu_epi32(words, reinterpret_cast<const std::uint32_t*>(m + (j + i) * ld) + q0)
                            : _mm512_setzero_si512();
      transpose16(r);
      for (int i = 0; i < 16 && q0 + i < whole; ++i)
        _mm512_mask_storeu_epi32(out + (q0 + i) * panel_cols + j, columns, r[i]);
    }
  if (depth % 2)  // the odd last k pairs with zero (and its word's other half is not read)
    for (std::int64_t j = 0; j < cols; ++j) out[whole * panel_cols + j] = m[j * ld + depth - 1].bits;
}

// op(A)[i0 .. i0+rows, p0 .. p0+depth) as rows of `pairs` words.
void pack_a(MatrixView<const BFloat16> a, Op op, std::int64_t i0, std::int64_t rows, std::int64_t p0,
            std::int64_t depth, std::uint32_t* out) {
  const std::int64_t pairs = (depth + 1) / 2;
  if (op == Op::trans)  // A is [k, m]: a pair's two values are rows of A, the inner loop runs along one
    return pack_pairs(&a(p0, i0), a.ld, 1, depth, rows, out, 1, pairs);
  for (std::int64_t r = 0; r < rows; ++r) {  // the words are A's rows as they are
    const BFloat16* src = &a(i0 + r, p0);
    std::memcpy(out + r * pairs, src, sizeof(BFloat16) * static_cast<std::size_t>(depth & ~std::int64_t{1}));
    if (depth % 2) out[r * pairs + pairs - 1] = pair(src[depth - 1], BFloat16{});
  }
}

// op(B)[p0 .. p0+depth, j0 .. j0+cols) as panels of panel_cols columns, each `pairs`
// rows of panel_cols words; columns past `cols` are zero.
void pack_b(MatrixView<const BFloat16> b, Op op, std::int64_t p0, std::int64_t depth, std::int64_t j0,
            std::int64_t cols, std::uint32_t* out) {
  const std::int64_t pairs = (depth + 1) / 2, panels = (cols + panel_cols - 1) / panel_cols;
  if (cols % panel_cols) std::memset(out, 0, sizeof(std::uint32_t) * panels * pairs * panel_cols);
  // B [k, n]: a pair's values are two rows of B; B [n, k] (op = trans): two neighbours in one.
  const std::int64_t step_p = op == Op::none ? b.ld : 1, step_j = op == Op::none ? 1 : b.ld;
  for (std::int64_t j = 0; j < cols; j += panel_cols) {
    const BFloat16* panel = &b(0, 0) + p0 * step_p + (j0 + j) * step_j;
    // B^T is read as words of two neighbours: whole words need an even ld and an aligned start (p0 is even).
    if (op == Op::none || (b.ld % 2 == 0 && reinterpret_cast<std::uintptr_t>(&b(0, 0)) % 4 == 0))
      pack_panel(panel, op, b.ld, depth, std::min(panel_cols, cols - j), out + j * pairs);
    else
      pack_pairs(panel, step_p, step_j, depth, std::min(panel_cols, cols - j), out + j * pairs, panel_cols, 1);
  }
}

// How a micro-tile's result joins C: overwrite with alpha acc + beta C (beta 0: C is
// not read), or add alpha acc (the later k blocks of gemm_bf16).
struct Update {
  float alpha, beta;
  bool first;
};

template <int MR, int NV>
__attribute__((target("avx512f,avx512bf16"))) void micro(const PairTile& t, std::int64_t i, std::int64_t j, Update u,
                                                          __mmask16 tail) {
  const std::uint32_t* a = t.a + i * t.a_row;
  const std::uint32_t* b = t.b + j;
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (std::int64_t q = 0; q < t.pairs; ++q) {
    __m512bh row[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) row[v] = (__m512bh)_mm512_loadu_si512(b + q * t.ldb + v * lanes);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512bh x = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r * t.a_row + q * t.a_col]));
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], x, row[v]);
    }
  }
  const __m512 alpha = _mm512_set1_ps(u.alpha), beta = _mm512_set1_ps(u.beta);
  float* c = t.c + i * t.ldc + j;
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      float* out = c + r * t.ldc + v * lanes;
      const __mmask16 m = v + 1 == NV ? tail : __mmask16(0xffff);
      __m512 result = _mm512_mul_ps(alpha, acc[r][v]);
      if (!u.first)
        result = _mm512_add_ps(result, _mm512_maskz_loadu_ps(m, out));
      else if (u.beta != 0.0f)
        result = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(m, out), result);
      _mm512_mask_storeu_ps(out, m, result);
    }
}

// Columns [j, j + NV vectors) over all rows, block_m rows at a time.
template <int NV>
void panel(const PairTile& t, std::int64_t j, Update u, __mmask16 tail) {
  std::int64_t i = 0;
  for (; i + block_m <= t.m; i += block_m) micro<block_m, NV>(t, i, j, u, tail);
  const auto rest = [&]<int MR>() { micro<MR, NV>(t, i, j, u, tail); };
  switch (t.m - i) {
    case 1: return rest.template operator()<1>();
    case 2: return rest.template operator()<2>();
    case 3: return rest.template operator()<3>();
    case 4: return rest.template operator()<4>();
    case 5: return rest.template operator()<5>();
    default: return;
  }
}

void pair_gemm(const PairTile& t, Update u) {
  for (std::int64_t j = 0; j < t.n; j += panel_cols) {
    const std::int64_t width = std::min(panel_cols, t.n - j), vectors = (width + lanes - 1) / lanes;
    const auto tail = static_cast<__mmask16>((1u << (width - (vectors - 1) * lanes)) - 1u);
    switch (vectors) {
      case 1: panel<1>(t, j, u, tail); break;
      case 2: panel<2>(t, j, u, tail); break;
      case 3: panel<3>(t, j, u, tail); break;
      default: panel<4>(t, j, u, tail); break;
    }
  }
}

// op(A) as the micro-kernel reads it: packed here, block by block, from a bf16
// matrix, or given as pair rows (row i at pairs + i * ld words), read in place.
struct LeftOperand {
  Op op = Op::none;
  MatrixView<const BFloat16> m{};
  const std::uint32_t* pairs = nullptr;
  std::int64_t ld = 0;
};

void gemm_dot_pairs(const LeftOperand& a, Op op_b, float alpha, MatrixView<const BFloat16> b, float beta,
                    MatrixView<float> c, std::int64_t k) {
  const std::int64_t m = c.rows, n = c.cols;
  const Scratch<std::uint32_t> a_pack(block_rows * (block_k / 2)), b_pack(block_cols * (block_k / 2));
  for (std::int64_t j0 = 0; j0 < n; j0 += block_cols) {
    const std::int64_t cols = std::min(block_cols, n - j0);
    for (std::int64_t p0 = 0; p0 < k; p0 += block_k) {
      const std::int64_t depth = std::min(block_k, k - p0), pairs = (depth + 1) / 2;
      pack_b(b, op_b, p0, depth, j0, cols, b_pack.data());
      const Update u{alpha, beta, p0 == 0};
      for (std::int64_t i0 = 0; i0 < m; i0 += block_rows) {
        const std::int64_t rows = std::min(block_rows, m - i0);
        const std::uint32_t* a_tile = a_pack.data();
        std::int64_t a_row = pairs;
        if (a.pairs != nullptr)
          a_tile = a.pairs + i0 * a.ld + p0 / 2, a_row = a.ld;  // p0 is a multiple of block_k: whole pairs
        else
          pack_a(a.m, a.op, i0, rows, p0, depth, a_pack.data());
        for (std::int64_t jp = 0; jp < cols; jp += panel_cols) {
          const PairTile t{rows, std::min(panel_cols, cols - jp), pairs, a_tile, a_row, 1,
                           b_pack.data() + jp * pairs, panel_cols, c.data + i0 * c.ld + j0 + jp, c.ld};
          pair_gemm(t, u);
        }
      }
    }
  }
}

#endif  // LORAFAST_BF16_KERNEL

}  // namespace

void pair_gemm(const PairTile& t, float alpha, float beta) {
  LF_ASSERT(bf16_arithmetic());
#ifdef LORAFAST_BF16_KERNEL
  if (t.m > 0 && t.n > 0) pair_gemm(t, Update{alpha, beta, true});
#endif
}

void gemm_bf16(Op op_a, Op op_b, float alpha, MatrixView<const BFloat16> a, MatrixView<const BFloat16> b, float beta,
               MatrixView<float> c) {
  const auto k = inner_length(op_a, a, op_b, b, c);
  if (c.rows == 0 || c.cols == 0) return;
#ifdef LORAFAST_BF16_KERNEL
  if (k > 0 && bf16_arithmetic()) return gemm_dot_pairs({op_a, a}, op_b, alpha, b, beta, c, k);
#endif
  gemm_widened(op_a, op_b, alpha, a, b, beta, c, k);
}

void gemm_bf16(Op op_a, Op op_b, float alpha, MatrixView<const float> a, MatrixView<const BFloat16> b, float beta,
               MatrixView<float> c) {
  if (op_a == Op::none && a.rows == 1) {  // a decoding step: B read in place
    inner_length(op_a, a, op_b, b, c);
    const Scratch<float> x(static_cast<std::size_t>(a.cols));
    for (std::int64_t p = 0; p < a.cols; ++p) x[p] = lorafast::to_f32(lorafast::to_bf16(a(0, p)));
    return gemv_bf16(op_b, alpha, x.data(), b, beta, c.row(0));
  }
#ifdef LORAFAST_BF16_KERNEL
  // Rounded straight into pair rows, which the micro-kernel reads in place.
  if (op_a == Op::none && bf16_arithmetic() && c.rows > 0 && c.cols > 0 && a.cols > 0) {
    const std::int64_t k = inner_length(op_a, a, op_b, b, c), ld = (k + 1) / 2;
    const Scratch<std::uint32_t> pairs(static_cast<std::size_t>(a.rows * ld));
    to_pair_rows(a, pairs.data(), ld);
    return gemm_dot_pairs({Op::none, {}, pairs.data(), ld}, op_b, alpha, b, beta, c, k);
  }
#endif
  const Scratch<BFloat16> rounded(static_cast<std::size_t>(a.rows * a.cols));
  for (std::int64_t i = 0; i < a.rows; ++i)
    to_bf16({a.row(i), static_cast<std::size_t>(a.cols)}, {rounded.data() + i * a.cols, static_cast<std::size_t>(a.cols)});
  gemm_bf16(op_a, op_b, alpha, MatrixView<const BFloat16>{rounded.data(), a.rows, a.cols, a.cols}, b, beta, c);
}

}  // namespace kernels
}  // namespace lorafast
