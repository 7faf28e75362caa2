// GPT-2 + LoRA loss gradient: central finite differences in double along a random
// direction per adapter tensor, on tiny models with awkward sizes (T = 1, odd widths,
// T crossing the attention kernels' 64-row tile), every target and q/k/v subsets.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "lorafast/threads.hpp"
#include "support/compare.hpp"
#include "support/tiny_gpt.hpp"

namespace lorafast {
namespace {

using testing::lora_relative_difference;
using testing::random_lora;
using testing::random_tokens;
using testing::tiny_config;
using testing::tiny_model_tensors;
using testing::TinyGptSpec;

struct FdCase {
  std::string name;
  TinyGptSpec spec;
  LoraConfig lora;
  std::int64_t batch = 2, seq_len = 5;
};

LoraConfig lora_config(std::int64_t rank, double alpha, std::vector<LoraTarget> targets, const std::string& qkv = "qkv",
                       bool rslora = false) {
  LoraConfig c;
  c.rank = rank;
  c.alpha = alpha;
  c.targets = std::move(targets);
  c.c_attn_qkv = parse_qkv_subset(qkv);
  c.rslora = rslora;
  return c;
}

const std::vector<LoraTarget> every_target(all_lora_targets.begin(), all_lora_targets.end());

std::vector<FdCase> fd_cases() {
  using enum LoraTarget;
  return {
      {"L2/D8/H2/V11/T5/N2/R2/all", {2, 2, 8, 11, 9, 1}, lora_config(2, 3.0, every_target), 2, 5},
      {"L2/D8/H2/V11/T5/N2/R3/c_attn-qv/rslora", {2, 2, 8, 11, 9, 2}, lora_config(3, 4.0, {attn_c_attn}, "qv", true), 2, 5},
      {"L1/D6/H3/V7/T1/N3/R1/all", {1, 3, 6, 7, 4, 3}, lora_config(1, 2.0, every_target), 3, 1},
      {"L3/D4/H1/V5/T7/N1/R2/k+mlp", {3, 1, 4, 5, 8, 4}, lora_config(2, 1.0, {mlp_c_proj, attn_c_attn, mlp_c_fc}, "k"), 1, 7},
      {"L1/D8/H2/V11/T70/N1/R2/all", {1, 2, 8, 11, 80, 5}, lora_config(2, 2.0, every_target), 1, 70},
  };
}

double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) s += a.at(i) * b.at(i);
  return s;
}

// A random direction; for c_attn's B, zero on the frozen (non-adapted) q/k/v rows.
Tensor direction(const Shape& shape, LoraTarget target, bool is_b, const LoraConfig& config, std::mt19937_64& rng) {
  std::normal_distribution<double> normal;
  Tensor v(DType::f64, shape);
  for (std::int64_t i = 0; i < v.numel(); ++i) v.data<double>()[i] = normal(rng);
  if (target == LoraTarget::attn_c_attn && is_b) {
    std::vector<LoraLayer> one(1);
    one[0][0] = LoraAdapter{Tensor(DType::f64, {1, 1}), std::move(v)};
    mask_c_attn_rows(one, config);
    v = std::move(one[0][0]->b);
  }
  return v;
}

void add_scaled(Tensor& t, const Tensor& v, double h) {
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] += h * v.at(i);
}

// Central difference (loss(p + h v) - loss(p - h v)) / 2h against <grad, v>. The
// loss is O(1) (about log V nats); truncation error is O(h^2) and rounding error
// ~ u |loss| / h, both near 1e-10 at h = 1e-5. The bound 1e-6 * ||grad|| ||v||
// (||grad|| over all adapters, so that tensors whose gradient is ~0 are not held to
// a relative bound on rounding noise) leaves a wide margin yet any wrong term, which
// changes the directional derivative by O(||grad|| ||v|| / sqrt(size)), fails it.
void check_finite_differences(const FdCase& c) {
  SCOPED_TRACE(c.name);
  const GptConfig config = tiny_config(c.spec);
  const auto weights = gpt_weights_from_tensors<double>(config, tiny_model_tensors(c.spec, true), "tiny");
  auto lora = random_lora<double>(config, c.lora, c.spec.seed + 7);
  const TokenBatch batch = random_tokens(c.batch, c.seq_len, config.vocab_size, c.spec.seed + 8);
  const auto grads = gpt_loss_and_grad(weights, lora, batch);
  EXPECT_NEAR(grads.loss, gpt_loss(weights, &lora, batch), 1e-12 * grads.loss);  // same function, same order
  double total_sq = 0;
  for (const auto& layer : grads.d_lora)
    for (const auto& g : layer)
      if (g) total_sq += dot(g->a, g->a) + dot(g->b, g->b);
  ASSERT_GT(total_sq, 0.0);
  std::mt19937_64 rng(c.spec.seed + 9);
  const double h = 1e-5;
  for (std::int64_t i = 0; i < config.n_layer; ++i)
    for (auto target : c.lora.targets)
      for (bool is_b : {false, true}) {
        auto& adapter = lora.layers[static_cast<std::size_t>(i)][static_cast<std::size_t>(target)];
        const auto& g = grads.d_lora[static_cast<std::size_t>(i)][static_cast<std::size_t>(target)];
        ASSERT_TRUE(adapter && g);
        Tensor& param = is_b ? adapter->b : adapter->a;
        const Tensor& grad = is_b ? g->b : g->a;
        const Tensor v = direction(param.shape(), target, is_b, c.lora, rng);
        add_scaled(param, v, h);
        const double plus = gpt_loss(weights, &lora, batch);
        add_scaled(param, v, -2 * h);
        const double minus = gpt_loss(weights, &lora, batch);
        add_scaled(param, v, h);
        const double numeric = (plus - minus) / (2 * h), analytic = dot(grad, v);
        EXPECT_NEAR(numeric, analytic, 1e-6 * std::sqrt(total_sq * dot(v, v)))
            << "layer " << i << " " << lora_target_name(target) << (is_b ? ".lora_B" : ".lora_A");
      }
}

TEST(GptGrad, FiniteDifferences) {
  set_num_threads(2);
  for (const auto& c : fd_cases()) check_finite_differences(c);
  set_num_threads(0);
}

// The frozen q/k/v rows of c_attn's lora_B get an exactly zero gradient.
TEST(GptGrad, FrozenCAttnRowsHaveZeroGradient) {
  const TinyGptSpec spec;
  const GptConfig config = tiny_config(spec);
  const auto weights = gpt_weights_from_tensors<double>(config, tiny_model_tensors(spec, false), "tiny");
  const auto lora = random_lora<double>(config, lora_config(2, 2.0, {LoraTarget::attn_c_attn}, "qv"), 3);
  const auto grads = gpt_loss_and_grad(weights, lora, random_tokens(2, 5, config.vocab_size, 4));
  for (const auto& layer : grads.d_lora) {
    const Tensor& d_b = layer[0]->b;  // [3D, R]
    double k_rows = 0, other = 0;
    for (std::int64_t i = 0; i < d_b.numel(); ++i)
      (i / (d_b.dim(1) * config.n_embd) == 1 ? k_rows : other) += std::abs(d_b.at(i));
    EXPECT_EQ(k_rows, 0.0);
    EXPECT_GT(other, 0.0);
  }
}

// PEFT's initialisation (B = 0) leaves the base model's loss unchanged, bit for bit,
// and gives d_A = 0 (d_A = s (d_y B)^T x) but d_B != 0.
TEST(GptGrad, PeftInitialisationIsTheBaseModel) {
  const TinyGptSpec spec;
  const GptConfig config = tiny_config(spec);
  const auto weights = gpt_weights_from_tensors<double>(config, tiny_model_tensors(spec, true), "tiny");
  const auto lora = init_gpt_lora<double>(config, lora_config(4, 8.0, every_target), 11);
  const TokenBatch batch = random_tokens(2, 6, config.vocab_size, 12);
  const auto grads = gpt_loss_and_grad(weights, lora, batch);
  EXPECT_EQ(grads.loss, gpt_loss<double>(weights, nullptr, batch));
  for (const auto& layer : grads.d_lora)
    for (auto target : all_lora_targets) {  // GPT-2's slots (the Llama ones stay empty)
      const auto& g = layer[static_cast<std::size_t>(target)];
      ASSERT_TRUE(g);
      EXPECT_EQ(dot(g->a, g->a), 0.0);
      EXPECT_GT(dot(g->b, g->b), 0.0);
    }
}

template <class T>
GptLora<T> cast_lora(const GptLora<double>& lora) {
  GptLora<T> out{lora.config, lora.layers};
  for (auto& layer : out.layers)
    for (auto& a : layer)
      if (a) a = LoraAdapter{a->a.to(dtype_of<T>()), a->b.to(dtype_of<T>())};
  return out;
}

// Thread count only reorders sums: double results agree to within rounding
// (measured 4e-16 relative; 1e-12 leaves room for sums of a few hundred terms of
// mixed sign, any real dependence on the split would be far larger).
TEST(GptGrad, ThreadCountOnlyReordersSums) {
  const TinyGptSpec spec{2, 2, 16, 13, 40, 21};
  const GptConfig config = tiny_config(spec);
  const auto weights = gpt_weights_from_tensors<double>(config, tiny_model_tensors(spec, true), "tiny");
  const auto lora = random_lora<double>(config, lora_config(3, 6.0, every_target), 22);
  const TokenBatch batch = random_tokens(3, 37, config.vocab_size, 23);
  set_num_threads(1);
  const auto one = gpt_loss_and_grad(weights, lora, batch);
  set_num_threads(2);
  const auto two = gpt_loss_and_grad(weights, lora, batch);
  set_num_threads(0);
  EXPECT_NEAR(one.loss, two.loss, 1e-12 * one.loss);
  EXPECT_LT(lora_relative_difference(two.d_lora, one.d_lora), 1e-12);
}

// float against double on the same (double) weights. Every value passes through
// ~10 layers of sums of at most 4D = 64 terms, a softmax over T keys and one over
// V; with u_f32 = 6e-8 the accumulated relative error is a small multiple of u
// times the depth (measured 4e-7 here); 2e-5 (~330 u_f32, 50x the measurement)
// bounds it with margin, while a wrong term would give O(1e-2) or worse.
TEST(GptGrad, FloatTracksDouble) {
  const TinyGptSpec spec{2, 2, 16, 13, 40, 31};
  const GptConfig config = tiny_config(spec);
  const TensorMap tensors = tiny_model_tensors(spec, false);
  const auto w64 = gpt_weights_from_tensors<double>(config, tensors, "tiny");
  const auto w32 = gpt_weights_from_tensors<float>(config, tensors, "tiny");
  const auto lora = random_lora<double>(config, lora_config(3, 6.0, every_target), 32);
  const TokenBatch batch = random_tokens(2, 33, config.vocab_size, 33);
  const auto ref = gpt_loss_and_grad(w64, lora, batch);
  const auto got = gpt_loss_and_grad(w32, cast_lora<float>(lora), batch);
  EXPECT_NEAR(got.loss, ref.loss, 1e-5 * ref.loss);
  EXPECT_LT(lora_relative_difference(got.d_lora, ref.d_lora), 2e-5);
}

TEST(GptGrad, BadTokensAreRejected) {
  const TinyGptSpec spec;
  const GptConfig config = tiny_config(spec);
  const auto weights = gpt_weights_from_tensors<double>(config, tiny_model_tensors(spec, true), "tiny");
  const auto lora = random_lora<double>(config, lora_config(2, 2.0, every_target), 1);
  auto expect_bad = [&](const TokenBatch& b, const std::string& needle) {
    try {
      gpt_loss_and_grad(weights, lora, b);
      ADD_FAILURE() << "accepted " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::bad_input);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  TokenBatch b = random_tokens(2, 5, config.vocab_size, 2);
  b.tokens[7] = static_cast<std::int32_t>(config.vocab_size);
  expect_bad(b, "token 7 is 11");
  expect_bad(random_tokens(1, config.n_positions + 1, config.vocab_size, 2), "n_positions");
  b = random_tokens(2, 5, config.vocab_size, 2);
  b.tokens.pop_back();
  expect_bad(b, "11 tokens");
}

}  // namespace
}  // namespace lorafast
