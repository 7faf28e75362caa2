// The GPT model's attention methods (AttentionRequest, gpt_loss.hpp): fast and chained
// heads against exact ones on tiny models in double, with T = 260 so that the causal
// surrogate (exact only within chunks of causal_chunk = 128 rows) really differs
// from exact attention. The q and k columns of c_attn are scaled down so that the
// score bounds G stay near 1 and low degrees certify.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "lorafast/threads.hpp"
#include "model/gpt_activations.hpp"
#include "support/tiny_gpt.hpp"

namespace lorafast {
namespace {

using testing::lora_relative_difference;
using testing::random_lora;
using testing::random_tokens;
using testing::tiny_config;
using testing::tiny_model_tensors;
using testing::TinyGptSpec;

constexpr std::int64_t seq_len = 260;
const TinyGptSpec spec{2, 2, 8, 11, 300, 5};

// The tiny model with the q and k columns of every c_attn (weights and bias) times `qk`.
GptWeights<double> model(double qk) {
  TensorMap tensors = tiny_model_tensors(spec, false);
  const std::int64_t d = spec.dim;
  for (std::int64_t i = 0; i < spec.layers; ++i) {
    double* w = tensors.at(cat("h.", i, ".attn.c_attn.weight")).data<double>();  // [D, 3D]
    double* b = tensors.at(cat("h.", i, ".attn.c_attn.bias")).data<double>();    // [3D]
    for (std::int64_t c = 0; c < 2 * d; ++c) {
      for (std::int64_t r = 0; r < d; ++r) w[r * 3 * d + c] *= qk;
      b[c] *= qk;
    }
  }
  return gpt_weights_from_tensors<double>(tiny_config(spec), tensors, "tiny");
}

GptLora<double> adapters(const GptConfig& config) {
  LoraConfig c;
  c.rank = 2;
  c.alpha = 2.0;
  c.targets = {LoraTarget::attn_c_attn, LoraTarget::mlp_c_fc};
  return random_lora<double>(config, c, 3);
}

TokenBatch tokens() { return random_tokens(2, seq_len, spec.vocab, 4); }

AttentionRequest request(Method method, double eps = 1e-3, std::optional<int> degree = std::nullopt) {
  AttentionRequest a;
  a.method = method;
  a.eps = eps;
  a.degree = degree;
  return a;
}

bool bit_identical(const GptLossGrad<double>& a, const GptLossGrad<double>& b) {
  if (a.loss != b.loss) return false;
  for (std::size_t i = 0; i < b.d_lora.size(); ++i)
    for (std::size_t t = 0; t < lora_target_count; ++t)
      if (b.d_lora[i][t])
        for (bool is_b : {false, true}) {
          const Tensor &x = is_b ? a.d_lora[i][t]->b : a.d_lora[i][t]->a;
          const Tensor &y = is_b ? b.d_lora[i][t]->b : b.d_lora[i][t]->a;
          for (std::int64_t j = 0; j < y.numel(); ++j)
            if (x.at(j) != y.at(j)) return false;
        }
  return true;
}

void expect_every_head(const GptAttentionPlan& plan, Method method) {
  ASSERT_EQ(static_cast<std::int64_t>(plan.size()), spec.layers);
  for (const auto& layer : plan) {
    ASSERT_EQ(static_cast<std::int64_t>(layer.size()), spec.heads);
    for (const auto& d : layer) EXPECT_EQ(d.method, method) << d.reason;
  }
}

// Each layer's attention gradient is certified within eps (dispatch.hpp); measured,
// the adapter gradients of the whole model stay 100x and more below it (e.g. fast at
// eps 1e-3: 8e-9, chained: 3e-7), since the certificate is worst-case. The lower
// bound shows that the surrogate ran: exact heads would agree to ~1e-15.
TEST(GptAttentionMethods, FastAndChainedMeetEps) {
  set_num_threads(2);
  const auto w = model(0.4);
  const auto lora = adapters(w.config);
  const auto batch = tokens();
  const auto exact = gpt_loss_and_grad(w, lora, batch, request(Method::exact));
  expect_every_head(exact.plan, Method::exact);
  for (Method method : {Method::fast, Method::chained})
    for (double eps : {1e-2, 1e-3}) {
      SCOPED_TRACE(cat(method_name(method), " eps ", eps));
      const auto got = gpt_loss_and_grad(w, lora, batch, request(method, eps));
      expect_every_head(got.plan, method);
      for (const auto& layer : got.plan)
        for (const auto& d : layer) EXPECT_LE(d.gradient_bound, eps);
      const double error = lora_relative_difference(got.d_lora, exact.d_lora);
      EXPECT_LE(error, eps);
      EXPECT_GT(error, 1e-12);
    }
  set_num_threads(0);
}

// With --degree the error falls with the degree (measured 1.4e-2, 5.1e-4, 1.1e-5,
// 1.5e-7 at degrees 2..8): each step of 2 gains over 10x here (G <= 1.9).
TEST(GptAttentionMethods, ForcedDegreeErrorFallsWithDegree) {
  const auto w = model(0.4);
  const auto lora = adapters(w.config);
  const auto batch = tokens();
  const auto exact = gpt_loss_and_grad(w, lora, batch, request(Method::exact));
  double previous = INFINITY;
  for (int degree : {2, 4, 6, 8}) {
    const auto got = gpt_loss_and_grad(w, lora, batch, request(Method::fast, 1e-3, degree));
    for (const auto& layer : got.plan)
      for (const auto& d : layer) EXPECT_EQ(d.degree, degree);
    const double error = lora_relative_difference(got.d_lora, exact.d_lora);
    EXPECT_LT(error, previous / 10) << "degree " << degree;
    previous = error;
  }
}

// A cost model under which exact attention looks very expensive: only the
// certificate can keep a head exact.
CostModel exact_is_expensive() {
  CostModel c;
  c.exact_quadratic = 1.0;
  return c;
}

// Large scores (q, k scaled up: G of 12 to 40) cannot be certified, so auto runs
// every head exactly: the same results as --method exact, bit for bit. The same
// request on small scores does pick the surrogate, so the test can tell.
TEST(GptAttentionMethods, AutoOnLargeScoresIsExact) {
  const auto lora = adapters(tiny_config(spec));
  const auto batch = tokens();
  auto automatic = request(Method::automatic);
  automatic.cost = exact_is_expensive();

  const auto large = model(4.0);
  const auto exact = gpt_loss_and_grad(large, lora, batch, request(Method::exact));
  const auto got = gpt_loss_and_grad(large, lora, batch, automatic);
  expect_every_head(got.plan, Method::exact);
  for (const auto& layer : got.plan)
    for (const auto& d : layer) EXPECT_EQ(d.reason.find("predicted"), std::string::npos) << d.reason;
  EXPECT_TRUE(bit_identical(got, exact));

  const auto small = gpt_loss_and_grad(model(0.4), lora, batch, automatic);
  for (const auto& layer : small.plan)
    for (const auto& d : layer) EXPECT_NE(d.method, Method::exact) << d.reason;
}

// The default request is exact attention, and so is auto at these sizes with the
// calibrated costs (exact is far cheaper at T = 260): bit for bit what the model
// computed before methods existed.
TEST(GptAttentionMethods, DefaultIsExact) {
  const auto w = model(0.4);
  const auto lora = adapters(w.config);
  const auto batch = tokens();
  const auto base = gpt_loss_and_grad(w, lora, batch);
  expect_every_head(base.plan, Method::exact);
  EXPECT_TRUE(bit_identical(gpt_loss_and_grad(w, lora, batch, request(Method::automatic)), base));
  EXPECT_EQ(gpt_loss(w, &lora, batch), base.loss);
}

double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) s += a.at(i) * b.at(i);
  return s;
}

// The backward pass runs the plan the forward pass kept: with --method fast at
// degree 2 (the surrogate far from exp), the gradient is the exact derivative of the
// surrogate loss gpt_loss computes, checked by central differences as in
// test_gpt_grad.cpp (bound 1e-6 ||grad|| ||v||), while the exact-attention gradient
// differs from it by over 1% of ||grad|| ||v|| — a backward pass that ran exact
// attention (or another degree) on the surrogate's activations would fail.
TEST(GptAttentionMethods, BackwardRunsTheForwardPlan) {
  auto w = model(1.0);
  auto lora = adapters(w.config);
  const auto batch = tokens();
  const auto fast = request(Method::fast, 1e-3, 2);

  GptActivations<double> act;
  gpt_forward(w, &lora, batch, fast, Keep::all, act);
  const auto grads = gpt_loss_and_grad(w, lora, batch, fast);
  ASSERT_EQ(grads.plan.size(), act.plan.size());
  for (std::size_t i = 0; i < act.plan.size(); ++i)
    for (std::size_t h = 0; h < act.plan[i].size(); ++h) {
      EXPECT_EQ(grads.plan[i][h].method, Method::fast);
      EXPECT_EQ(grads.plan[i][h].degree, 2);
      EXPECT_EQ(grads.plan[i][h].score_bound, act.plan[i][h].score_bound);
    }
  EXPECT_EQ(grads.loss, gpt_loss(w, &lora, batch, fast));
  const auto exact = gpt_loss_and_grad(w, lora, batch, request(Method::exact));

  double total_sq = 0;
  for (const auto& layer : grads.d_lora)
    for (const auto& g : layer)
      if (g) total_sq += dot(g->a, g->a) + dot(g->b, g->b);
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal;
  const double h = 1e-5;
  double largest_exact_gap = 0;
  for (std::size_t i = 0; i < lora.layers.size(); ++i)
    for (std::size_t t = 0; t < lora_target_count; ++t) {
      if (!lora.layers[i][t]) continue;
      for (bool is_b : {false, true}) {
        if (is_b && t == static_cast<std::size_t>(LoraTarget::attn_c_attn)) continue;  // a + mlp B suffice
        Tensor& param = is_b ? lora.layers[i][t]->b : lora.layers[i][t]->a;
        Tensor v(DType::f64, param.shape());
        for (std::int64_t j = 0; j < v.numel(); ++j) v.data<double>()[j] = normal(rng);
        auto shift = [&](double by) {
          for (std::int64_t j = 0; j < v.numel(); ++j) param.data<double>()[j] += by * v.at(j);
        };
        shift(h);
        const double plus = gpt_loss(w, &lora, batch, fast);
        shift(-2 * h);
        const double minus = gpt_loss(w, &lora, batch, fast);
        shift(h);
        const Tensor& g = is_b ? grads.d_lora[i][t]->b : grads.d_lora[i][t]->a;
        const Tensor& e = is_b ? exact.d_lora[i][t]->b : exact.d_lora[i][t]->a;
        const double scale = std::sqrt(total_sq * dot(v, v));
        EXPECT_NEAR((plus - minus) / (2 * h), dot(g, v), 1e-6 * scale) << "layer " << i << " target " << t;
        largest_exact_gap = std::max(largest_exact_gap, std::abs(dot(e, v) - dot(g, v)) / scale);
      }
    }
  EXPECT_GT(largest_exact_gap, 1e-2);
}

// --method fast that cannot certify eps is refused naming the method that can.
TEST(GptAttentionMethods, UncertifiableFastNamesExact) {
  const auto w = model(4.0);
  const auto lora = adapters(w.config);
  try {
    gpt_loss_and_grad(w, lora, tokens(), request(Method::fast));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::cannot_meet);
    EXPECT_NE(std::string(e.what()).find("`method` exact can"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lorafast
