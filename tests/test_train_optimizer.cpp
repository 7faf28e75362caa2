// AdamW, LoRA+, frozen c_attn rows, the learning-rate schedule, gradient clipping
// and accumulation, against hand-computed values and a scalar restatement of
// torch.optim.AdamW (step_size = lr / bc1, denom = sqrt(v) / sqrt(bc2) + eps).
//
// Tolerances: the scalar restatement evaluates the same formula in double in a
// different order (a few roundings), so 1e-13 relative suffices; a wrong term
// (missing bias correction, decay applied after the update, ...) is O(1e-3) or more.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <utility>

#include "lorafast/train_optimizer.hpp"
#include "support/tiny_gpt.hpp"

namespace lorafast {
namespace {

GptConfig model_config() { return testing::tiny_config({1, 2, 4, 7, 5, 1}); }

LoraConfig lora_config(const std::string& qkv = "qkv") {
  LoraConfig c;
  c.rank = 2;
  c.alpha = 4;
  c.targets = {LoraTarget::attn_c_attn, LoraTarget::mlp_c_fc};
  c.c_attn_qkv = parse_qkv_subset(qkv);
  return c;
}

std::vector<LoraLayer> random_grads(const GptLora<double>& lora, std::uint64_t seed) {
  std::vector<LoraLayer> g = init_adamw_state(lora).m;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  for (Tensor* t : lora_tensor_list(g))
    for (std::int64_t i = 0; i < t->numel(); ++i) t->data<double>()[i] = normal(rng);
  return g;
}

// torch.optim.AdamW for one scalar, as PyTorch writes it.
struct ScalarAdamW {
  double p, m = 0, v = 0;
  void step(double g, double lr, int t, double wd, double b1 = 0.9, double b2 = 0.999, double eps = 1e-8) {
    p *= 1 - lr * wd;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const double bc1 = 1 - std::pow(b1, t), bc2 = 1 - std::pow(b2, t);
    p -= (lr / bc1) * m / (std::sqrt(v) / std::sqrt(bc2) + eps);
  }
};

TEST(AdamW, FirstStepIsSignedLearningRateAfterDecay) {
  auto lora = testing::random_lora<double>(model_config(), lora_config(), 3);
  const auto before = lora;
  const auto grads = random_grads(lora, 4);
  auto state = init_adamw_state(lora);
  AdamWOptions o;
  o.weight_decay = 0.1;
  const double lr = 0.01;
  adamw_step(lora, grads, state, o, lr);
  EXPECT_EQ(state.step, 1);
  // t = 1: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps).
  const auto p0 = lora_tensor_list(before.layers);
  const auto p1 = lora_tensor_list(lora.layers);
  const auto g = lora_tensor_list(grads);
  for (std::size_t k = 0; k < p1.size(); ++k)
    for (std::int64_t i = 0; i < p1[k]->numel(); ++i) {
      const double gi = g[k]->at(i);
      const double want = p0[k]->at(i) * (1 - lr * 0.1) - lr * gi / (std::abs(gi) + 1e-8);
      EXPECT_NEAR(p1[k]->at(i), want, 1e-15) << "tensor " << k << " element " << i;
    }
}

TEST(AdamW, ThreeStepsMatchScalarTorchFormulaWithLoraPlus) {
  auto lora = testing::random_lora<double>(model_config(), lora_config(), 5);
  auto state = init_adamw_state(lora);
  AdamWOptions o;
  o.weight_decay = 0.05;
  o.lora_plus_ratio = 16;
  o.beta1 = 0.8;
  o.beta2 = 0.95;
  o.eps = 1e-6;
  std::vector<std::vector<ScalarAdamW>> ref;
  for (const Tensor* t : lora_tensor_list(lora.layers)) {
    ref.emplace_back();
    for (std::int64_t i = 0; i < t->numel(); ++i) ref.back().push_back({t->at(i)});
  }
  const double lrs[] = {1e-2, 3e-3, 5e-4};
  for (int step = 1; step <= 3; ++step) {
    const auto grads = random_grads(lora, 10 + step);
    const auto g = lora_tensor_list(grads);
    adamw_step(lora, grads, state, o, lrs[step - 1]);
    for (std::size_t k = 0; k < g.size(); ++k) {
      const double lr = lrs[step - 1] * (k % 2 == 1 ? o.lora_plus_ratio : 1.0);  // A, B alternate
      for (std::int64_t i = 0; i < g[k]->numel(); ++i)
        ref[k][static_cast<std::size_t>(i)].step(g[k]->at(i), lr, step, o.weight_decay, o.beta1, o.beta2, o.eps);
    }
  }
  const auto p = lora_tensor_list(lora.layers);
  const auto m = lora_tensor_list(state.m);
  const auto v = lora_tensor_list(state.v);
  for (std::size_t k = 0; k < p.size(); ++k)
    for (std::int64_t i = 0; i < p[k]->numel(); ++i) {
      const auto& r = ref[k][static_cast<std::size_t>(i)];
      EXPECT_NEAR(p[k]->at(i), r.p, 1e-13 * std::max(1.0, std::abs(r.p)));
      EXPECT_NEAR(m[k]->at(i), r.m, 1e-13 * std::max(1.0, std::abs(r.m)));
      EXPECT_NEAR(v[k]->at(i), r.v, 1e-13 * std::max(1.0, std::abs(r.v)));
    }
}

TEST(AdamW, FrozenKeyRowsOfCAttnStayZero) {
  const auto config = lora_config("qv");
  auto lora = testing::random_lora<double>(model_config(), config, 7);
  auto state = init_adamw_state(lora);
  AdamWOptions o;
  o.weight_decay = 0.1;
  for (int step = 0; step < 3; ++step) adamw_step(lora, random_grads(lora, 20 + step), state, o, 0.1);
  const Tensor& b = lora.at(0, LoraTarget::attn_c_attn)->b;  // [3D, R], rows q | k | v
  const std::int64_t d = b.dim(0) / 3, r = b.dim(1);
  double moved = 0;
  for (std::int64_t i = 0; i < 3 * d * r; ++i) {
    if (i >= d * r && i < 2 * d * r) {
      EXPECT_EQ(b.at(i), 0.0) << "k row element " << i;
    }
    moved += std::abs(b.at(i));
  }
  EXPECT_GT(moved, 0.0);
}

TEST(AdamW, FloatStateStaysFloat) {
  auto lora = testing::random_lora<float>(model_config(), lora_config(), 8);
  auto state = init_adamw_state(lora);
  auto grads = state.m;
  for (Tensor* t : lora_tensor_list(grads)) t->data<float>()[0] = 1.0f;
  adamw_step(lora, grads, state, AdamWOptions{}, 1e-3);
  EXPECT_EQ(lora_tensor_list(state.v)[0]->dtype(), DType::f32);
  EXPECT_FLOAT_EQ(static_cast<float>(lora_tensor_list(state.v)[0]->at(0)), 1e-3f);  // (1 - 0.999) * 1^2
}

TEST(LrSchedule, WarmupThenCosineToFloor) {
  const LrSchedule s{1e-3, 10, 110, 0.1};
  EXPECT_DOUBLE_EQ(s.at(1), 1e-4);
  EXPECT_DOUBLE_EQ(s.at(5), 5e-4);
  EXPECT_DOUBLE_EQ(s.at(10), 1e-3);
  EXPECT_NEAR(s.at(60), 1e-4 + 0.9e-3 * 0.5, 1e-18);  // half way through the cosine: cos(pi/2) = 0
  EXPECT_NEAR(s.at(35), 1e-4 + 0.9e-3 * 0.5 * (1 + std::cos(M_PI / 4)), 1e-18);
  EXPECT_DOUBLE_EQ(s.at(110), 1e-4);
  EXPECT_DOUBLE_EQ(s.at(500), 1e-4);  // kept at the floor after the horizon
  for (std::int64_t t = 11; t < 110; ++t) EXPECT_LT(s.at(t + 1), s.at(t)) << t;
}

TEST(LrSchedule, NoWarmupStartsNearPeak) {
  const LrSchedule s{2e-3, 0, 4, 0.0};
  EXPECT_NEAR(s.at(1), 2e-3 * 0.5 * (1 + std::cos(M_PI / 4)), 1e-18);
  EXPECT_NEAR(s.at(2), 1e-3, 1e-18);
  EXPECT_DOUBLE_EQ(s.at(4), 0.0);
  EXPECT_THROW((LrSchedule{0.0, 0, 4, 0.1}.validate()), Error);
  EXPECT_THROW((LrSchedule{1e-3, 0, 4, 1.5}.validate()), Error);
}

TEST(GradClip, ScalesToMaxNormLikeTorch) {
  auto lora = testing::random_lora<double>(model_config(), lora_config(), 9);
  auto grads = random_grads(lora, 30);
  const double norm = global_grad_norm(grads);
  double direct = 0;
  for (const Tensor* t : lora_tensor_list(grads))
    for (std::int64_t i = 0; i < t->numel(); ++i) direct += t->at(i) * t->at(i);
  EXPECT_NEAR(norm, std::sqrt(direct), 1e-12 * norm);

  auto unclipped = grads;
  EXPECT_DOUBLE_EQ(clip_grad_norm(unclipped, 2 * norm), norm);
  EXPECT_EQ(global_grad_norm(unclipped), norm);  // untouched below the bound
  EXPECT_DOUBLE_EQ(clip_grad_norm(unclipped, 0.0), norm);  // disabled
  EXPECT_EQ(global_grad_norm(unclipped), norm);

  EXPECT_DOUBLE_EQ(clip_grad_norm(grads, 1.0), norm);
  EXPECT_NEAR(global_grad_norm(grads), norm / (norm + 1e-6), 1e-12);  // torch: max_norm / (norm + 1e-6)
}

TEST(GradAccumulation, SumThenScaleIsTheMean) {
  auto lora = testing::random_lora<double>(model_config(), lora_config(), 11);
  const auto g1 = random_grads(lora, 40), g2 = random_grads(lora, 41);
  std::vector<LoraLayer> acc;
  accumulate_grads(acc, g1);
  accumulate_grads(acc, g2);
  scale_grads(acc, 0.5);
  const auto a = lora_tensor_list(std::as_const(acc));
  const auto b = lora_tensor_list(g1), c = lora_tensor_list(g2);
  for (std::size_t k = 0; k < a.size(); ++k)
    for (std::int64_t i = 0; i < a[k]->numel(); ++i) EXPECT_DOUBLE_EQ(a[k]->at(i), 0.5 * (b[k]->at(i) + c[k]->at(i)));
}

TEST(AdamWOptions, RejectsBadValues) {
  AdamWOptions o;
  o.lora_plus_ratio = 0;
  EXPECT_THROW(o.validate(), Error);
  o = {};
  o.beta1 = 1.0;
  EXPECT_THROW(o.validate(), Error);
  o = {};
  o.weight_decay = -1;
  EXPECT_THROW(o.validate(), Error);
}

}  // namespace
}  // namespace lorafast
