// The fast path's products of a feature block in column layout, X: [F, width], with a
// thin state S: [F, n] (n = E+1 or E, ~9) and thin row data in column layout
// Y^T: [n, width]. OpenBLAS packs both operands of every call, which costs more than
// the arithmetic when one side has ~9 columns; these kernels stream X once and keep
// the thin side and up to `group` accumulators in SIMD registers.
//
// Column-layout blocks have `width` a multiple of simd_lanes<T> (fast_common.hpp's
// padded blocks); padding columns of Y^T must be zero so that reductions along the
// rows ignore them, and padding columns of X must be finite.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "lorafast/error.hpp"
#include "lorafast/tensor.hpp"

namespace lorafast::fast {

// One 64-byte SIMD register of T (GCC/Clang vector extension; AVX-512 when compiled
// for it, otherwise split by the compiler into narrower registers).
template <class T>
struct Simd {
  static constexpr int lanes = 64 / static_cast<int>(sizeof(T));
  typedef T vec __attribute__((vector_size(64)));
  static vec load(const T* p) {
    vec v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(T* p, vec v) { std::memcpy(p, &v, sizeof v); }
};

// At most this many accumulators per pass: they and the operands fit 32 registers,
// and a group's sums fold into one register (group <= lanes).
template <class T>
constexpr int group_size = Simd<T>::lanes < 12 ? Simd<T>::lanes : 12;

// Calls body(std::integral_constant<int, g>) for the runtime g in [1, Max].
template <int Max, class Body>
void with_group(int g, Body&& body) {
  if constexpr (Max > 0) {
    if (g == Max) return body(std::integral_constant<int, Max>{});
    with_group<Max - 1>(g, body);
  }
}

// One level of the lane-sum tree: a and b each hold lanes/S owners of S lanes; the
// result holds twice the owners (a's, then b's) of S/2 lanes each, pairwise summed.
template <class T, int S, std::size_t... I>
typename Simd<T>::vec fold_pair(typename Simd<T>::vec a, typename Simd<T>::vec b, std::index_sequence<I...>) {
  constexpr int w = Simd<T>::lanes;
  constexpr auto lo = [](int i) {
    const int owner = i / (S / 2), within = i % (S / 2);
    return owner < w / S ? owner * S + within : w + (owner - w / S) * S + within;
  };
  return __builtin_shufflevector(a, b, lo(I)...) + __builtin_shufflevector(a, b, (lo(I) + S / 2)...);
}

// v[0..count) -> lane o of v[0] is the sum of the lanes of the original v[o] (count <= lanes).
// Inlined: out of line, the accumulators went through memory (7% of the chained path).
template <class T, int S = Simd<T>::lanes>
[[gnu::always_inline]] inline void fold_lanes(typename Simd<T>::vec* v, int count) {
  if constexpr (S >= 2) {
    const typename Simd<T>::vec zero{};
    for (int i = 0; 2 * i < count; ++i)
      v[i] = fold_pair<T, S>(v[2 * i], 2 * i + 1 < count ? v[2 * i + 1] : zero,
                             std::make_index_sequence<Simd<T>::lanes>{});
    fold_lanes<T, S / 2>(v, (count + 1) / 2);
  }
}

// Splits n columns into passes of at most group_size<T>, as even as possible.
template <class T, class Pass>
void column_groups(std::int64_t n, Pass pass) {
  const std::int64_t passes = (n + group_size<T> - 1) / group_size<T>;
  for (std::int64_t c0 = 0, p = 0; p < passes; ++p) {
    const std::int64_t g = (n - c0 + (passes - p) - 1) / (passes - p);
    with_group<group_size<T>>(static_cast<int>(g), [&](auto width) { pass(c0, width); });
    c0 += g;
  }
}

// out[r, c] = (accumulate ? out[r, c] : 0) + sum_f X[f, r] S[f, c] for r < out.rows.
// Up to nv SIMD columns of rows per pass: each broadcast entry of S feeds nv FMAs, and
// a thin S (one column for z) still has nv independent chains.
template <class T>
void rows_by_state(std::type_identity_t<MatrixView<const T>> x, std::type_identity_t<MatrixView<const T>> s,
                   MatrixView<T> out, bool accumulate) {
  using V = typename Simd<T>::vec;
  constexpr int w = Simd<T>::lanes;
  LF_ASSERT(x.rows == s.rows && x.cols % w == 0 && out.rows <= x.cols && out.cols == s.cols);
  column_groups<T>(s.cols, [&](std::int64_t c0, auto group) {
    constexpr int g = decltype(group)::value;
    constexpr int nv = g <= 4 ? 4 : 2;  // g nv accumulators + nv rows of X <= 30 registers
    const auto columns = [&](std::int64_t r0, auto vecs) {
      constexpr int cv = decltype(vecs)::value;
      V acc[cv][g] = {};
      for (std::int64_t f = 0; f < x.rows; ++f) {
        V xv[cv];
        for (int k = 0; k < cv; ++k) xv[k] = Simd<T>::load(x.row(f) + r0 + k * w);
        const T* sf = s.row(f) + c0;
        for (int j = 0; j < g; ++j)
          for (int k = 0; k < cv; ++k) acc[k][j] += xv[k] * sf[j];
      }
      T lanes[cv][g][w];
      for (int k = 0; k < cv; ++k)
        for (int j = 0; j < g; ++j) Simd<T>::store(lanes[k][j], acc[k][j]);
      for (std::int64_t r = r0; r < std::min<std::int64_t>(r0 + cv * w, out.rows); ++r)
        for (int j = 0; j < g; ++j) {
          const T sum = lanes[(r - r0) / w][j][(r - r0) % w];
          out(r, c0 + j) = (accumulate ? out(r, c0 + j) : T(0)) + sum;
        }
    };
    const std::int64_t vectors = (out.rows + w - 1) / w;
    std::int64_t v = 0;
    for (; v + nv <= vectors; v += nv) columns(v * w, std::integral_constant<int, nv>{});
    for (; v < vectors; ++v) columns(v * w, std::integral_constant<int, 1>{});
  });
}

// out[f, r] = sum_c S[f, c] Y[r, c] over the whole width; out: [F, width].
// Register blocks of nf features x nv SIMD columns: the group's g x nv vectors of Y^T
// stay in registers for a whole column block, and each broadcast entry of S feeds nv
// FMAs of nf * nv independent chains (four chains ran latency-bound at ~1 FMA/cycle).
// Every out entry sums its columns in order, whatever the blocking.
template <class T>
void state_by_rows(std::type_identity_t<MatrixView<const T>> s, std::type_identity_t<MatrixView<const T>> y_t,
                   MatrixView<T> out) {
  using V = typename Simd<T>::vec;
  constexpr int w = Simd<T>::lanes;
  LF_ASSERT(out.rows == s.rows && out.cols == y_t.cols && y_t.rows == s.cols && out.cols % w == 0);
  column_groups<T>(s.cols, [&](std::int64_t c0, auto group) {
    constexpr int g = decltype(group)::value;
    constexpr int nv = g <= 9 ? 2 : 1, nf = nv == 2 ? 6 : 8;  // g nv + nf nv <= 30 registers
    // Local copies: stores through out would otherwise force reloading the views.
    const T* const s_data = s.data + c0;
    T* const out_data = out.data;
    const std::int64_t s_ld = s.ld, out_ld = out.ld;
    const auto columns = [&](std::int64_t r0, auto vecs) {
      constexpr int cv = decltype(vecs)::value;
      V y[g][cv];
      for (int j = 0; j < g; ++j)
        for (int k = 0; k < cv; ++k) y[j][k] = Simd<T>::load(y_t.row(c0 + j) + r0 + k * w);
      const auto features = [=](std::int64_t f0, auto count) {
        constexpr int cf = decltype(count)::value;
        const T* sf = s_data + f0 * s_ld;
        T* of = out_data + f0 * out_ld + r0;
        V o[cf][cv];
        for (int u = 0; u < cf; ++u)
          for (int k = 0; k < cv; ++k) o[u][k] = c0 > 0 ? Simd<T>::load(of + u * out_ld + k * w) : V{};
        // Fully unrolled, so that y stays in registers.
#pragma GCC unroll 16
        for (int j = 0; j < g; ++j)
#pragma GCC unroll 8
          for (int u = 0; u < cf; ++u) {
            const T sj = sf[u * s_ld + j];
            for (int k = 0; k < cv; ++k) o[u][k] += y[j][k] * sj;
          }
        for (int u = 0; u < cf; ++u)
          for (int k = 0; k < cv; ++k) Simd<T>::store(of + u * out_ld + k * w, o[u][k]);
      };
      std::int64_t f0 = 0;
      for (; f0 + nf <= s.rows; f0 += nf) features(f0, std::integral_constant<int, nf>{});
      for (; f0 < s.rows; ++f0) features(f0, std::integral_constant<int, 1>{});
    };
    std::int64_t r0 = 0;
    for (; r0 + nv * w <= out.cols; r0 += nv * w) columns(r0, std::integral_constant<int, nv>{});
    if (r0 < out.cols) columns(r0, std::integral_constant<int, 1>{});  // nv = 2: one column left
  });
}

// out[f, c] = (accumulate ? out[f, c] : 0) + sum_r X[f, r] Y[r, c] over the whole width,
// where x(f, r0) gives the SIMD column of X[f, r0 ..] (loaded, or computed when X is
// cheaper to recompute than to store). Two features at a time: each load of Y feeds
// two FMAs (measured 10% faster at F = 1287, width 128, 9 columns).
template <class T, class Rows>
void features_by_rows(Rows x, std::int64_t width, std::type_identity_t<MatrixView<const T>> y_t, MatrixView<T> out,
                      bool accumulate) {
  using V = typename Simd<T>::vec;
  constexpr int w = Simd<T>::lanes;
  LF_ASSERT(out.cols == y_t.rows && y_t.cols == width && width % w == 0);
  column_groups<T>(y_t.rows, [&](std::int64_t c0, auto group) {
    constexpr int g = decltype(group)::value;
    const auto features = [&](std::int64_t f, auto count) {
      constexpr int nf = decltype(count)::value;
      V acc[nf][g] = {};
      for (std::int64_t r0 = 0; r0 < width; r0 += w) {
        V xv[nf];
        for (int u = 0; u < nf; ++u) xv[u] = x(f + u, r0);
        for (int j = 0; j < g; ++j) {
          const V yv = Simd<T>::load(y_t.row(c0 + j) + r0);
          for (int u = 0; u < nf; ++u) acc[u][j] += xv[u] * yv;
        }
      }
      for (int u = 0; u < nf; ++u) {
        fold_lanes<T>(acc[u], g);
        T sums[w];
        Simd<T>::store(sums, acc[u][0]);
        T* o = out.row(f + u) + c0;
        for (int j = 0; j < g; ++j) o[j] = (accumulate ? o[j] : T(0)) + sums[j];
      }
    };
    std::int64_t f = 0;
    for (; f + 2 <= out.rows; f += 2) features(f, std::integral_constant<int, 2>{});
    if (f < out.rows) features(f, std::integral_constant<int, 1>{});
  });
}

// The same with X stored: [F, width] in column layout.
template <class T>
void features_by_rows(std::type_identity_t<MatrixView<const T>> x, std::type_identity_t<MatrixView<const T>> y_t,
                      MatrixView<T> out, bool accumulate) {
  LF_ASSERT(out.rows == x.rows);
  features_by_rows<T>([&](std::int64_t f, std::int64_t r0) { return Simd<T>::load(x.row(f) + r0); }, x.cols, y_t,
                      out, accumulate);
}

}  // namespace lorafast::fast
