// The exact kernels with bf16 products (AttentionParams::bf16_products) against a
// double reference, element by element, on awkward sizes (tile edges, odd L and E,
// grouped-query heads, causal or not), with the bf16 kernels and with the f32
// fallback forced. Inputs are bf16 values, so the only bf16 roundings are the
// kernels' own: P before P V and P^T dO, dS before dS K and dS^T Q. Each rounds a
// term by at most 2^-9 relative; the rule allows 2^-8 times the sum of the magnitudes
// of the terms (twice the first-order bound: the other half covers the f32 sums of the
// products, at most (L + E) u < 2^-14 of the same magnitudes here), plus, where dS is
// a difference, the error of dP - delta: (L + E) u times its terms' magnitudes, and
// the bf16 rounding that delta = rowsum(dO ∘ O) inherits from O.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "lorafast/attention.hpp"
#include "lorafast/bf16.hpp"
#include "lorafast/threads.hpp"
#include "support/compare.hpp"

namespace lorafast {
namespace {

constexpr double bf16_term = 0x1p-8;

struct Shape {
  std::int64_t n, l, h, h_kv, e;
  bool causal;
  std::int64_t window = 0;
  std::int64_t doc = 0;  // > 0: every row packs documents of this length (the last one shorter)

  // Row i's visible keys [lo, hi), from the masks' definitions (AttentionParams).
  std::int64_t lo(std::int64_t i) const {
    return std::max(doc > 0 ? i / doc * doc : 0, window > 0 ? i - window + 1 : 0);
  }
  std::int64_t hi(std::int64_t i) const { return causal ? i + 1 : doc > 0 ? std::min(l, (i / doc + 1) * doc) : l; }
  std::vector<std::int64_t> cu_seqlens() const {
    std::vector<std::int64_t> cu;
    if (doc == 0) return cu;
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t start = 0; start < l; start += doc) cu.push_back(r * l + start);
    cu.push_back(n * l);
    return cu;
  }
};

std::string name(const Shape& s) {
  return "N" + std::to_string(s.n) + "/L" + std::to_string(s.l) + "/H" + std::to_string(s.h) + "/K" +
         std::to_string(s.h_kv) + "/E" + std::to_string(s.e) + (s.causal ? "/causal" : "/bidir") + "/W" +
         std::to_string(s.window) + "/doc" + std::to_string(s.doc);
}

struct Outputs {
  std::vector<float> o, lse, d_q, d_k, d_v;
};

// Packed [N, L, heads, E] inputs, values in bf16.
struct Inputs {
  std::vector<float> q, k, v, d_o;
};

Inputs make_inputs(const Shape& s) {
  std::mt19937 rng(static_cast<unsigned>(s.l * 131 + s.e * 7 + s.h));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto fill = [&](std::int64_t heads) {
    std::vector<float> x(s.n * s.l * heads * s.e);
    for (auto& v : x) v = to_f32(to_bf16(normal(rng)));
    return x;
  };
  Inputs in;
  in.q = fill(s.h), in.k = fill(s.h_kv), in.v = fill(s.h_kv), in.d_o = fill(s.h);
  return in;
}

Outputs run(const Shape& s, const Inputs& in, bool bf16_products) {
  Outputs out{std::vector<float>(in.q.size()), std::vector<float>(s.n * s.h * s.l), std::vector<float>(in.q.size()),
              std::vector<float>(in.k.size()), std::vector<float>(in.v.size())};
  AttentionParams<float> p;
  p.batch = s.n, p.seq_len = s.l, p.heads = s.h, p.kv_heads = s.h_kv, p.head_dim = s.e;
  p.scale = 1.0 / std::sqrt(double(s.e));
  p.causal = s.causal;
  p.window = s.window;
  const auto cu = s.cu_seqlens();
  p.cu_seqlens = cu;
  p.bf16_products = bf16_products;
  p.q = in.q.data(), p.k = in.k.data(), p.v = in.v.data(), p.d_o = in.d_o.data();
  p.o = out.o.data(), p.lse = out.lse.data(), p.d_q = out.d_q.data(), p.d_k = out.d_k.data(), p.d_v = out.d_v.data();
  attention_fwd(p);
  attention_bwd(p);
  return out;
}

// The double reference of one (sequence, query head) and the error bound of every
// output entry; dK and dV bounds add over the query heads of a group, as the sums do.
void check(const Shape& s, const Inputs& in, const Outputs& got) {
  const std::int64_t l = s.l, e = s.e, group = s.h / s.h_kv;
  const double scale = 1.0 / std::sqrt(double(e)), u = testing::unit_roundoff_f32;
  const auto at = [&](std::int64_t heads, std::int64_t n, std::int64_t i, std::int64_t hd, std::int64_t c) {
    return std::size_t(((n * l + i) * heads + hd) * e + c);
  };
  for (std::int64_t n = 0; n < s.n; ++n)
    for (std::int64_t g = 0; g < s.h_kv; ++g) {
      std::vector<double> d_k(l * e, 0), d_v(l * e, 0), bound_k(l * e, 0), bound_v(l * e, 0);
      for (std::int64_t h = g * group; h < (g + 1) * group; ++h) {
        const auto q = [&](std::int64_t i, std::int64_t c) { return double(in.q[at(s.h, n, i, h, c)]); };
        const auto d_o = [&](std::int64_t i, std::int64_t c) { return double(in.d_o[at(s.h, n, i, h, c)]); };
        for (std::int64_t i = 0; i < l; ++i) {
          const std::int64_t j_lo = s.lo(i), keys = s.hi(i) - j_lo;  // index j is key j_lo + j
          const auto k = [&](std::int64_t j, std::int64_t c) { return double(in.k[at(s.h_kv, n, j_lo + j, g, c)]); };
          const auto v = [&](std::int64_t j, std::int64_t c) { return double(in.v[at(s.h_kv, n, j_lo + j, g, c)]); };
          std::vector<double> prob(keys), d_p(keys), d_p_size(keys);
          double mx = -INFINITY, sum = 0;
          for (std::int64_t j = 0; j < keys; ++j) {
            double dot = 0;
            for (std::int64_t c = 0; c < e; ++c) dot += q(i, c) * k(j, c);
            mx = std::max(mx, prob[j] = scale * dot);
          }
          for (auto& x : prob) sum += (x = std::exp(x - mx));
          for (auto& x : prob) x /= sum;
          std::vector<double> o(e, 0), o_size(e, 0);
          for (std::int64_t j = 0; j < keys; ++j)
            for (std::int64_t c = 0; c < e; ++c) o[c] += prob[j] * v(j, c), o_size[c] += prob[j] * std::abs(v(j, c));
          // delta = rowsum(dO ∘ O) is taken from the kernel's O, which carries the bf16
          // rounding of P: up to 2^-9 of o_size per entry.
          double delta = 0, delta_size = 0, delta_bf16 = 0;
          for (std::int64_t c = 0; c < e; ++c) {
            delta += d_o(i, c) * o[c];
            delta_size += std::abs(d_o(i, c) * o[c]);
            delta_bf16 += std::abs(d_o(i, c)) * o_size[c];
          }
          for (std::int64_t j = 0; j < keys; ++j) {
            d_p[j] = d_p_size[j] = 0;
            for (std::int64_t c = 0; c < e; ++c) d_p[j] += d_o(i, c) * v(j, c), d_p_size[j] += std::abs(d_o(i, c) * v(j, c));
          }
          const double sums = double(keys + e + 4) * u;  // f32 sums of the kernels' products
          for (std::int64_t c = 0; c < e; ++c) {
            const double want = o[c], bound = bf16_term * o_size[c] + sums * o_size[c];
            const double have = got.o[at(s.h, n, i, h, c)];
            ASSERT_NEAR(have, want, bound) << name(s) << " O(" << i << "," << h << "," << c << ")";
          }
          std::vector<double> d_q(e, 0), bound_q(e, 0);
          for (std::int64_t j = 0; j < keys; ++j) {
            const double d_s = prob[j] * (d_p[j] - delta);
            // Error of dS beyond its own rounding: that of dP and delta, times P.
            const double d_s_err = prob[j] * (sums * (d_p_size[j] + delta_size + std::abs(delta)) + bf16_term * delta_bf16);
            for (std::int64_t c = 0; c < e; ++c) {
              d_q[c] += scale * d_s * k(j, c);
              bound_q[c] += scale * (bf16_term * std::abs(d_s) + d_s_err) * std::abs(k(j, c));
              const std::int64_t kc = (j_lo + j) * e + c;
              d_k[kc] += scale * d_s * q(i, c);
              bound_k[kc] += scale * (bf16_term * std::abs(d_s) + d_s_err) * std::abs(q(i, c));
              d_v[kc] += prob[j] * d_o(i, c);
              bound_v[kc] += (bf16_term + sums) * prob[j] * std::abs(d_o(i, c));
            }
          }
          for (std::int64_t c = 0; c < e; ++c) {
            const double have = got.d_q[at(s.h, n, i, h, c)];
            ASSERT_NEAR(have, d_q[c], bound_q[c] ) << name(s) << " dQ(" << i << "," << h << "," << c << ")";
          }
        }
      }
      for (std::int64_t j = 0; j < l; ++j)
        for (std::int64_t c = 0; c < e; ++c) {
          ASSERT_NEAR(got.d_k[at(s.h_kv, n, j, g, c)], d_k[j * e + c], bound_k[j * e + c])
              << name(s) << " dK(" << j << "," << g << "," << c << ")";
          ASSERT_NEAR(got.d_v[at(s.h_kv, n, j, g, c)], d_v[j * e + c], bound_v[j * e + c])
              << name(s) << " dV(" << j << "," << g << "," << c << ")";
        }
    }
}

const std::vector<Shape> shapes{
    {1, 1, 1, 1, 5, false},   {1, 7, 3, 3, 1, true},    {2, 97, 3, 1, 5, false}, {1, 128, 4, 2, 64, true},
    {1, 257, 1, 1, 72, true}, {1, 300, 2, 2, 64, false}, {1, 513, 2, 1, 64, true},
    // Masks: a window of 1, one across row blocks and key tiles, one longer than the row;
    // documents of length 1 and across tile edges, causal or not, with a window.
    {2, 97, 3, 1, 5, true, 1}, {1, 700, 2, 1, 64, true, 300}, {1, 65, 1, 1, 7, true, 100},
    {2, 33, 2, 2, 5, true, 0, 1}, {1, 600, 4, 2, 64, true, 0, 257}, {1, 600, 2, 1, 72, false, 0, 130},
    {2, 515, 2, 1, 64, true, 129, 200}};

TEST(AttentionBf16, MatchesDoubleReferenceWithinBf16Rounding) {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const auto& s : shapes) {
      const auto in = make_inputs(s);
      check(s, in, run(s, in, true));
    }
  }
  set_num_threads(0);
}

// The bf16 products really run where the CPU has them (their results differ from
// the f32 kernel's), and where it has none (forced here) the f32 kernel runs instead,
// bit for bit.
TEST(AttentionBf16, RunsBf16ProductsWhereAvailableAndF32Otherwise) {
  const Shape s{1, 300, 2, 1, 64, true};
  const auto in = make_inputs(s);
  const auto f32 = run(s, in, false);
  if (cpu_has_bf16_arithmetic()) {
    EXPECT_NE(run(s, in, true).o, f32.o);
  }
  set_bf16_arithmetic(false);
  const auto fallback = run(s, in, true);
  set_bf16_arithmetic(true);
  EXPECT_EQ(fallback.o, f32.o);
  EXPECT_EQ(fallback.d_q, f32.d_q);
  EXPECT_EQ(fallback.d_k, f32.d_k);
  EXPECT_EQ(fallback.d_v, f32.d_v);
  check(s, in, fallback);
}

TEST(AttentionBf16, NeedsF32Tensors) {
  AttentionParams<double> p;
  std::vector<double> x(8);
  p.seq_len = 2, p.head_dim = 4, p.scale = 0.5, p.bf16_products = true;
  p.q = p.k = p.v = x.data();
  p.o = x.data();
  EXPECT_THROW(checked(p, AttentionUse::scores), Error);
}

}  // namespace
}  // namespace lorafast
