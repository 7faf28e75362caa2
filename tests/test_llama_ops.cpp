// The Llama-family ops (RMSNorm, also with Gemma's (1 + w) scale, RoPE, SwiGLU,
// Gemma's GeGLU, grouped-query attention): forward
// against the double reference (src/ref/llama_ref.cpp) in float and double, and
// every backward against central finite differences in double.
//
// Tolerance model (DESIGN.md rule 5):
// - forward vs reference: each output is a short expression (RoPE: two products and
//   a sum, SwiGLU: exp, division, two products) or a normalisation by a D-term sum
//   (RMSNorm), so |got - ref| <= (D + 16) u_T * (sum of |terms|) bounds the rounding,
//   u_T the unit roundoff of the computing precision (the float path also rounds its
//   inputs and its cos/sin table: a few more u_T, inside the 16).
// - backward vs finite differences of L = sum(g * y): central differences with step
//   h = 1e-5 err by h^2 |L'''| / 6 + u_64 |L| / h ~ 1e-10 for these O(1) values; the
//   bound 1e-7 (1 + |dL|) leaves three orders of margin yet a wrong term (a sign, a
//   missing 1/D, the wrong rotation direction) is O(1).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "lorafast/planned_attention.hpp"
#include "model/llama_attention.hpp"
#include "model/rms_norm.hpp"
#include "model/rope.hpp"
#include "model/swiglu.hpp"
#include "lorafast/gpt_loss.hpp"
#include "ref/llama_reference.hpp"
#include "support/compare.hpp"

namespace lorafast {
namespace {

using testing::unit_roundoff_f32;
using testing::unit_roundoff_f64;
constexpr double fd_step = 1e-5, fd_bound = 1e-7;

std::vector<double> random_vector(std::size_t n, std::uint64_t seed, double lo = -1.5, double hi = 1.5) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

template <class T>
constexpr double unit_roundoff() {
  return std::is_same_v<T, float> ? unit_roundoff_f32 : unit_roundoff_f64;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// d L / d x[i] by central differences, L = loss(x).
double central_difference(const std::function<double(const std::vector<double>&)>& loss, std::vector<double> x,
                          std::size_t i) {
  const double x0 = x[i];
  x[i] = x0 + fd_step;
  const double up = loss(x);
  x[i] = x0 - fd_step;
  const double down = loss(x);
  return (up - down) / (2 * fd_step);
}

void expect_matches_fd(const std::function<double(const std::vector<double>&)>& loss, const std::vector<double>& x,
                       const std::vector<double>& grad, const char* what) {
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double fd = central_difference(loss, x, i);
    EXPECT_LE(std::abs(grad[i] - fd), fd_bound * (1 + std::abs(fd))) << what << "[" << i << "]";
  }
}

// ---- RMSNorm

template <class T>
void rms_norm_forward_case(std::int64_t rows, std::int64_t dim) {
  const auto x = random_vector(static_cast<std::size_t>(rows * dim), 1), w = random_vector(static_cast<std::size_t>(dim), 2);
  const auto want = ref::rms_norm(x, w, dim, 1e-5);
  auto xt = cast<T>(x), wt = cast<T>(w);
  std::vector<T> y(x.size()), rstd(static_cast<std::size_t>(rows));
  rms_norm_fwd(RmsNormParams<T>{rows, dim, 1e-5, xt.data(), wt.data(), y.data(), rstd.data(), nullptr, nullptr, nullptr});
  for (std::size_t i = 0; i < y.size(); ++i)
    EXPECT_LE(std::abs(y[i] - want[i]), (dim + 16) * unit_roundoff<T>() * std::abs(want[i]) + 1e-300) << i;
}

TEST(RmsNorm, ForwardMatchesReference) {
  for (std::int64_t dim : {1, 5, 64, 72}) {
    rms_norm_forward_case<float>(7, dim);
    rms_norm_forward_case<double>(7, dim);
  }
}

TEST(RmsNorm, BackwardMatchesFiniteDifferences) {
  const std::int64_t rows = 3, dim = 5;
  const auto x = random_vector(rows * dim, 3), w = random_vector(dim, 4), g = random_vector(rows * dim, 5);
  auto loss_x = [&](const std::vector<double>& xx) { return dot(ref::rms_norm(xx, w, dim, 1e-5), g); };
  auto loss_w = [&](const std::vector<double>& ww) { return dot(ref::rms_norm(x, ww, dim, 1e-5), g); };
  std::vector<double> y(x.size()), rstd(rows), d_x(x.size(), 0.0), d_w(dim);
  RmsNormParams<double> p{rows, dim, 1e-5, x.data(), w.data(), y.data(), rstd.data(), g.data(), d_x.data(), d_w.data()};
  rms_norm_fwd(p);
  rms_norm_bwd(p);
  expect_matches_fd(loss_x, x, d_x, "d_x");
  expect_matches_fd(loss_w, w, d_w, "d_weight");
}

// Gemma's (1 + w): the reference with weight 1 + w; the float path rounds 1 + w once more.
TEST(RmsNorm, PlusOneIsTheNormWithWeightOnePlusW) {
  const std::int64_t rows = 3, dim = 5;
  const auto x = random_vector(rows * dim, 3), w = random_vector(dim, 4), g = random_vector(rows * dim, 5);
  auto plus_one = [](std::vector<double> ww) {
    for (double& v : ww) v += 1;
    return ww;
  };
  const auto want = ref::rms_norm(x, plus_one(w), dim, 1e-5);
  std::vector<double> y(x.size()), rstd(rows), d_x(x.size(), 0.0), d_w(dim);
  RmsNormParams<double> p{rows, dim, 1e-5, x.data(), w.data(), y.data(), rstd.data(), g.data(), d_x.data(), d_w.data(),
                          true};
  rms_norm_fwd(p);
  for (std::size_t i = 0; i < y.size(); ++i)
    EXPECT_LE(std::abs(y[i] - want[i]), (dim + 16) * unit_roundoff_f64 * std::abs(want[i]) + 1e-300) << i;
  rms_norm_bwd(p);
  expect_matches_fd([&](const std::vector<double>& xx) { return dot(ref::rms_norm(xx, plus_one(w), dim, 1e-5), g); },
                    x, d_x, "d_x");
  expect_matches_fd([&](const std::vector<double>& ww) { return dot(ref::rms_norm(x, plus_one(ww), dim, 1e-5), g); },
                    w, d_w, "d_weight");
}

// ---- RoPE

std::vector<RopeConfig> rope_configs() {
  RopeConfig standard, linear, llama3;
  standard.theta = 100.0;
  linear.type = RopeConfig::Type::linear;
  linear.factor = 3.0;
  llama3.type = RopeConfig::Type::llama3;
  llama3.theta = 500000.0;
  llama3.factor = 8.0;
  llama3.original_max_positions = 16;  // E = 8: wavelengths on both sides of 16 / 4 and 16 / 1
  return {standard, linear, llama3};
}

template <class T>
void rope_forward_case(const RopeConfig& config, std::int64_t heads, std::int64_t head_dim) {
  const std::int64_t seq_len = 7, rows = 2 * seq_len, width = heads * head_dim;
  const auto x = random_vector(static_cast<std::size_t>(rows * width), 6);
  const auto want = ref::rope(x, config, heads, head_dim, seq_len);
  const auto table = make_rope_table<T>(config, head_dim, seq_len);
  auto y = cast<T>(x);
  rope_fwd(RopeParams<T>{rows, heads, &table, y.data()});
  const std::int64_t half = head_dim / 2;
  for (std::int64_t i = 0; i < rows * width; ++i) {
    const std::int64_t c = i % head_dim, pair = c < half ? i + half : i - half;
    const double terms = std::abs(x[static_cast<std::size_t>(i)]) + std::abs(x[static_cast<std::size_t>(pair)]);
    EXPECT_LE(std::abs(y[static_cast<std::size_t>(i)] - want[static_cast<std::size_t>(i)]), 16 * unit_roundoff<T>() * terms)
        << "E " << head_dim << " element " << i;
  }
}

TEST(Rope, ForwardMatchesReferenceForEveryType) {
  for (const auto& config : rope_configs())
    for (std::int64_t heads : {1, 3})
      for (std::int64_t e : {2, 8, 64}) {
        rope_forward_case<float>(config, heads, e);
        rope_forward_case<double>(config, heads, e);
      }
}

TEST(Rope, BackwardMatchesFiniteDifferences) {
  for (const auto& config : rope_configs()) {
    const std::int64_t seq_len = 5, heads = 2, e = 8, rows = seq_len;
    const auto x = random_vector(static_cast<std::size_t>(rows * heads * e), 7), g = random_vector(x.size(), 8);
    auto loss = [&](const std::vector<double>& xx) { return dot(ref::rope(xx, config, heads, e, seq_len), g); };
    const auto table = make_rope_table<double>(config, e, seq_len);
    auto d_x = g;
    rope_bwd(RopeParams<double>{rows, heads, &table, d_x.data()});
    expect_matches_fd(loss, x, d_x, "d_x");
  }
}

// ---- SwiGLU

template <class T>
void swiglu_forward_case() {
  const auto gate = random_vector(97, 9, -9, 9), up = random_vector(97, 10);
  const auto want = ref::swiglu(gate, up);
  auto gt = cast<T>(gate), ut = cast<T>(up);
  std::vector<T> h(gate.size());
  swiglu_fwd(SwigluParams<T>{97, gt.data(), ut.data(), h.data(), nullptr, nullptr, nullptr});
  for (std::size_t i = 0; i < h.size(); ++i)
    EXPECT_LE(std::abs(h[i] - want[i]), 16 * unit_roundoff<T>() * (1 + std::abs(gate[i])) * std::abs(want[i]) + 1e-300)
        << i;  // exp(-g) carries the rounding of its argument: relative |g| u_T
}

TEST(Swiglu, ForwardMatchesReference) {
  swiglu_forward_case<float>();
  swiglu_forward_case<double>();
}

TEST(Swiglu, BackwardMatchesFiniteDifferences) {
  const auto gate = random_vector(11, 11, -4, 4), up = random_vector(11, 12), g = random_vector(11, 13);
  std::vector<double> d_gate(11), d_up = g;  // d_up aliases d_h, as the Llama backward pass runs it
  swiglu_bwd(SwigluParams<double>{11, gate.data(), up.data(), nullptr, d_up.data(), d_gate.data(), d_up.data()});
  expect_matches_fd([&](const std::vector<double>& x) { return dot(ref::swiglu(x, up), g); }, gate, d_gate, "d_gate");
  expect_matches_fd([&](const std::vector<double>& x) { return dot(ref::swiglu(gate, x), g); }, up, d_up, "d_up");
}

// ---- GeGLU (Gemma): gelu_pytorch_tanh(gate) * up, against its definition in double,
// 0.5 (1 + tanh(u)) written 1 / (1 + exp(-2u)) (no cancellation for u << 0)

std::vector<double> geglu_definition(const std::vector<double>& gate, const std::vector<double>& up) {
  std::vector<double> h(gate.size());
  for (std::size_t i = 0; i < h.size(); ++i) {
    const double g = gate[i], u = std::sqrt(2 / M_PI) * (g + 0.044715 * g * g * g);
    h[i] = g / (1 + std::exp(-2 * u)) * up[i];
  }
  return h;
}

template <class T>
void geglu_forward_case() {
  const auto gate = random_vector(97, 9, -9, 9), up = random_vector(97, 10);
  const auto want = geglu_definition(gate, up);
  auto gt = cast<T>(gate), ut = cast<T>(up);
  std::vector<T> h(gate.size());
  geglu_fwd(GegluParams<T>{97, gt.data(), ut.data(), h.data(), nullptr, nullptr, nullptr});
  // As SwiGLU: the sigmoid's argument 2c (g + k g^3), |arg| <= 2 |g| + 0.1 |g|^3, carries its
  // rounding (and the input's), a relative |arg| u_T of h.
  for (std::size_t i = 0; i < h.size(); ++i) {
    const double arg = 2 * std::abs(gate[i]) + 0.1 * std::pow(std::abs(gate[i]), 3);
    EXPECT_LE(std::abs(h[i] - want[i]), 16 * unit_roundoff<T>() * (1 + arg) * std::abs(want[i]) + 1e-300) << i;
  }
}

TEST(Geglu, ForwardMatchesTheDefinition) {
  geglu_forward_case<float>();
  geglu_forward_case<double>();
}

TEST(Geglu, BackwardMatchesFiniteDifferences) {
  const auto gate = random_vector(11, 11, -4, 4), up = random_vector(11, 12), g = random_vector(11, 13);
  std::vector<double> d_gate(11), d_up = g;  // d_up aliases d_h, as the decoder's backward pass runs it
  geglu_bwd(GegluParams<double>{11, gate.data(), up.data(), nullptr, d_up.data(), d_gate.data(), d_up.data()});
  expect_matches_fd([&](const std::vector<double>& x) { return dot(geglu_definition(x, up), g); }, gate, d_gate,
                    "d_gate");
  expect_matches_fd([&](const std::vector<double>& x) { return dot(geglu_definition(gate, x), g); }, up, d_up, "d_up");
}

// ---- grouped-query attention (k and v shared by groups of query heads)

TEST(LlamaAttention, GroupedQueryBackwardMatchesFiniteDifferences) {
  const std::int64_t n = 2, t = 5, h = 4, kv = 2, e = 3;
  GptConfig cfg;
  cfg.n_head = h;
  cfg.n_embd = h * e;
  cfg.llama.n_kv_head = kv;
  const auto q = random_vector(static_cast<std::size_t>(n * t * h * e), 14);
  const auto k = random_vector(static_cast<std::size_t>(n * t * kv * e), 15);
  const auto v = random_vector(k.size(), 16), g = random_vector(q.size(), 17);
  const AttentionRequest request;  // exact
  auto params = [&](const std::vector<double>& qq, const std::vector<double>& kk, const std::vector<double>& vv,
                    std::vector<double>& o, std::vector<double>& lse) {
    auto p = llama_attention_params<double>(cfg, n, t);
    p.q = qq.data(), p.k = kk.data(), p.v = vv.data(), p.o = o.data(), p.lse = lse.data();
    return p;
  };
  auto loss = [&](const std::vector<double>& qq, const std::vector<double>& kk, const std::vector<double>& vv) {
    std::vector<double> o(q.size()), lse(static_cast<std::size_t>(n * h * t));
    const auto p = params(qq, kk, vv, o, lse);
    planned_attention_fwd(p, plan_heads(p, request));
    return dot(o, g);
  };
  std::vector<double> o(q.size()), lse(static_cast<std::size_t>(n * h * t)), d_q(q.size()), d_k(k.size()), d_v(v.size());
  auto p = params(q, k, v, o, lse);
  const auto plan = plan_heads(p, request);
  planned_attention_fwd(p, plan);
  p.d_o = g.data(), p.d_q = d_q.data(), p.d_k = d_k.data(), p.d_v = d_v.data();
  planned_attention_bwd(p, plan);
  expect_matches_fd([&](const std::vector<double>& x) { return loss(x, k, v); }, q, d_q, "d_q");
  expect_matches_fd([&](const std::vector<double>& x) { return loss(q, x, v); }, k, d_k, "d_k");
  expect_matches_fd([&](const std::vector<double>& x) { return loss(q, k, x); }, v, d_v, "d_v");
}

}  // namespace
}  // namespace lorafast
