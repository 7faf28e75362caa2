// The decoding-step attention (one new query row against the cache, grouped-query
// heads, a sliding window or none) against the double reference: the last row of
// causal attention over the same keys, with each K/V head repeated for its query heads.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "lorafast/error.hpp"
#include "ops/decode/decode_attention.hpp"
#include "ref/reference.hpp"

namespace lorafast {
namespace {

struct Case {
  std::int64_t length, heads, kv_heads, head_dim, window = 0;
};

std::vector<double> normal(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist;
  std::vector<double> x(n);
  for (double& v : x) v = dist(rng);
  return x;
}

// The reference output row of the last position [H E], from q [L, H E] and k, v [L, K E].
std::vector<double> reference_row(const Case& c, const std::vector<double>& q, const std::vector<double>& k,
                                  const std::vector<double>& v, double scale) {
  const std::int64_t l = c.length, e = c.head_dim, width = c.heads * e, group = c.heads / c.kv_heads;
  std::vector<double> kr(static_cast<std::size_t>(l * width)), vr(kr.size()), o(kr.size());
  for (std::int64_t j = 0; j < l; ++j)
    for (std::int64_t h = 0; h < c.heads; ++h)
      for (std::int64_t x = 0; x < e; ++x) {
        const auto from = static_cast<std::size_t>(j * c.kv_heads * e + (h / group) * e + x);
        kr[static_cast<std::size_t>(j * width + h * e + x)] = k[from];
        vr[static_cast<std::size_t>(j * width + h * e + x)] = v[from];
      }
  ref::AttentionProblem p{{q.data(), l, width, width}, {kr.data(), l, width, width}, {vr.data(), l, width, width},
                          c.heads, scale, /*causal=*/true, c.window};
  ref::attention_fwd(p, MatrixView<double>{o.data(), l, width, width});
  return {o.end() - width, o.end()};
}

template <class T>
void check_case(const Case& c) {
  const std::int64_t l = c.length, e = c.head_dim, width = c.heads * e;
  const double scale = 1 / std::sqrt(static_cast<double>(e));
  auto q = normal(static_cast<std::size_t>(l * width), 1);
  auto k = normal(static_cast<std::size_t>(l * c.kv_heads * e), 2), v = normal(k.size(), 3);
  for (auto* x : {&q, &k, &v})  // the inputs as T holds them, so both sides see the same numbers
    for (double& value : *x) value = static_cast<double>(static_cast<T>(value));
  const auto expect = reference_row(c, q, k, v, scale);
  const std::vector<T> qt(q.end() - width, q.end()), kt(k.begin(), k.end()), vt(v.begin(), v.end());
  std::vector<T> o(static_cast<std::size_t>(width));
  decode_attention_fwd(DecodeAttentionParams<T>{l, c.heads, c.kv_heads, e, scale, qt.data(), kt.data(), vt.data(),
                                                o.data(), c.window});
  double scale_o = 0;
  for (double x : expect) scale_o = std::max(scale_o, std::abs(x));
  // Both accumulate in double; they differ in summation order (double: ~1e-16 per
  // term over L terms, 1e-13 of the output scale is far above it) and, for f32, in
  // the final rounding of o to f32 (half an ulp, 2^-24 relative; bound 2^-23).
  const double tol = (std::is_same_v<T, float> ? 0x1.0p-23 : 1e-13) * scale_o;
  for (std::int64_t i = 0; i < width; ++i)
    ASSERT_NEAR(o[static_cast<std::size_t>(i)], expect[static_cast<std::size_t>(i)], tol)
        << "L" << l << "/H" << c.heads << "/K" << c.kv_heads << "/E" << e << "/W" << c.window << " entry " << i;
}

TEST(DecodeAttention, LastCausalRowOfTheReference) {
  for (const Case c : {Case{1, 1, 1, 1}, Case{7, 3, 3, 5}, Case{97, 6, 2, 5}, Case{97, 6, 1, 64}, Case{128, 4, 4, 72},
                       Case{1025, 2, 1, 8}, Case{1, 1, 1, 3, 1}, Case{97, 6, 2, 5, 1}, Case{97, 6, 2, 5, 13},
                       Case{7, 3, 3, 5, 100}}) {
    check_case<double>(c);
    check_case<float>(c);
  }
}

}  // namespace
}  // namespace lorafast
