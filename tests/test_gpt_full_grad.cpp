// Full-parameter gradient of the GPT-2 loss (pretraining): d loss / d every base
// tensor, checked by central finite differences in double along a random direction
// per tensor on tiny models with awkward sizes (T = 1, odd widths, one head, T
// crossing the attention kernels' 64-row tile), with and without adapters; the
// adapter gradients it returns alongside must be those of gpt_loss_and_grad.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "lorafast/threads.hpp"
#include "support/tiny_gpt.hpp"

namespace lorafast {
namespace {

using testing::random_lora;
using testing::random_tokens;
using testing::tiny_config;
using testing::tiny_model_tensors;
using testing::TinyGptSpec;

double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) s += a.at(i) * b.at(i);
  return s;
}

// ||got - ref|| / ||ref|| over all base tensors together.
template <class A, class B>
double relative_difference(const GptWeights<A>& got, const GptWeights<B>& ref) {
  const auto g = gpt_named_tensors(got), r = gpt_named_tensors(ref);
  double diff = 0, norm = 0;
  for (std::size_t k = 0; k < r.size(); ++k)
    for (std::int64_t i = 0; i < r[k].second->numel(); ++i) {
      const double x = g[k].second->at(i), y = r[k].second->at(i);
      diff += (x - y) * (x - y);
      norm += y * y;
    }
  return std::sqrt(diff / norm);
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::equal(a.bytes(), a.bytes() + a.nbytes(), b.bytes(), b.bytes() + b.nbytes());
}

LoraConfig every_target_lora(std::int64_t rank, double alpha) {
  LoraConfig c;
  c.rank = rank;
  c.alpha = alpha;
  c.targets.assign(all_lora_targets.begin(), all_lora_targets.end());
  return c;
}

struct FdCase {
  std::string name;
  TinyGptSpec spec;
  std::int64_t batch = 2, seq_len = 5;
  bool with_lora = false;
};

std::vector<FdCase> fd_cases() {
  return {
      {"L2/D8/H2/V11/T5/N2", {2, 2, 8, 11, 9, 1}, 2, 5},
      {"L1/D6/H3/V7/T1/N3", {1, 3, 6, 7, 4, 3}, 3, 1},
      {"L3/D5/H1/V3/T7/N2", {3, 1, 5, 3, 8, 4}, 2, 7},
      {"L2/D8/H2/V11/T5/N2/lora-all", {2, 2, 8, 11, 9, 6}, 2, 5, true},
      {"L1/D8/H2/V11/T70/N1 (crosses a 64-row tile)", {1, 2, 8, 11, 80, 5}, 1, 70},
  };
}

// Central difference (loss(w + h v) - loss(w - h v)) / 2h against <grad, v>, one
// random direction v per base tensor. The loss is O(1) (about log V nats);
// truncation error is O(h^2) and rounding error ~ u |loss| / h, both near 1e-10 at
// h = 1e-5. The bound 1e-6 * ||grad|| ||v|| (||grad|| over all base tensors, so that
// tensors whose gradient is ~0 are not held to a relative bound on rounding noise)
// leaves a wide margin (measured worst 3e-10 of ||grad|| ||v||) yet any wrong term,
// which changes the directional derivative by O(||grad|| ||v|| / sqrt(size)), fails it.
void check_finite_differences(const FdCase& c) {
  SCOPED_TRACE(c.name);
  const GptConfig config = tiny_config(c.spec);
  auto weights = gpt_weights_from_tensors<double>(config, tiny_model_tensors(c.spec, true), "tiny");
  std::optional<GptLora<double>> lora;
  if (c.with_lora) lora = random_lora<double>(config, every_target_lora(2, 3.0), c.spec.seed + 7);
  const GptLora<double>* adapters = lora ? &*lora : nullptr;
  const TokenBatch batch = random_tokens(c.batch, c.seq_len, config.vocab_size, c.spec.seed + 8);
  const auto grads = gpt_loss_and_full_grad(weights, adapters, batch);
  EXPECT_NEAR(grads.loss, gpt_loss(weights, adapters, batch), 1e-12 * grads.loss);
  const auto named_grads = gpt_named_tensors(grads.d_weights);
  double total_sq = 0;
  for (const auto& [name, g] : named_grads) total_sq += dot(*g, *g);
  ASSERT_GT(total_sq, 0.0);

  std::mt19937_64 rng(c.spec.seed + 9);
  std::normal_distribution<double> normal;
  const double h = 1e-5;
  auto named_weights = gpt_named_tensors(weights);
  ASSERT_EQ(named_weights.size(), named_grads.size());
  for (std::size_t k = 0; k < named_weights.size(); ++k) {
    Tensor& param = *named_weights[k].second;
    const Tensor& grad = *named_grads[k].second;
    ASSERT_EQ(named_grads[k].first, named_weights[k].first);
    ASSERT_EQ(grad.shape(), param.shape()) << named_weights[k].first;
    Tensor v(DType::f64, param.shape());
    for (std::int64_t i = 0; i < v.numel(); ++i) v.data<double>()[i] = normal(rng);
    auto shift = [&](double step) {
      for (std::int64_t i = 0; i < param.numel(); ++i) param.data<double>()[i] += step * v.at(i);
    };
    shift(h);
    const double plus = gpt_loss(weights, adapters, batch);
    shift(-2 * h);
    const double minus = gpt_loss(weights, adapters, batch);
    shift(h);
    EXPECT_NEAR((plus - minus) / (2 * h), dot(grad, v), 1e-6 * std::sqrt(total_sq * dot(v, v)))
        << named_weights[k].first;
  }
  // Positions at or past T never enter the loss: their wpe rows get exactly zero.
  const Tensor& d_wpe = grads.d_weights.wpe;
  for (std::int64_t i = c.seq_len * config.n_embd; i < d_wpe.numel(); ++i) ASSERT_EQ(d_wpe.at(i), 0.0) << i;
}

TEST(GptFullGrad, FiniteDifferences) {
  set_num_threads(2);
  for (const auto& c : fd_cases()) check_finite_differences(c);
  set_num_threads(0);
}

// With adapters, the adapter gradients (and the loss) are those of the LoRA-only
// backward bit for bit: the full pass only adds outputs, it changes no arithmetic.
TEST(GptFullGrad, AdapterGradientsAreThoseOfTheLoraBackward) {
  const TinyGptSpec spec{2, 2, 16, 13, 40, 41};
  const GptConfig config = tiny_config(spec);
  const auto weights = gpt_weights_from_tensors<double>(config, tiny_model_tensors(spec, true), "tiny");
  auto lora_config = every_target_lora(3, 6.0);
  lora_config.c_attn_qkv = parse_qkv_subset("qv");
  const auto lora = random_lora<double>(config, lora_config, 42);
  const TokenBatch batch = random_tokens(2, 37, config.vocab_size, 43);
  const auto full = gpt_loss_and_full_grad(weights, &lora, batch);
  const auto lora_only = gpt_loss_and_grad(weights, lora, batch);
  EXPECT_EQ(full.loss, lora_only.loss);
  ASSERT_EQ(full.d_lora.size(), lora_only.d_lora.size());
  for (std::size_t i = 0; i < full.d_lora.size(); ++i)
    for (auto target : all_lora_targets) {  // GPT-2's slots (the Llama ones stay empty)
      const auto t = static_cast<std::size_t>(target);
      ASSERT_TRUE(full.d_lora[i][t] && lora_only.d_lora[i][t]);
      EXPECT_TRUE(bitwise_equal(full.d_lora[i][t]->a, lora_only.d_lora[i][t]->a)) << i << " " << t;
      EXPECT_TRUE(bitwise_equal(full.d_lora[i][t]->b, lora_only.d_lora[i][t]->b)) << i << " " << t;
    }
  EXPECT_TRUE(gpt_loss_and_full_grad<double>(weights, nullptr, batch).d_lora.empty());
}

// Deterministic for a given thread count (bit for bit), and a different thread
// count only reorders sums: double results agree to within rounding (measured
// 2e-16 relative; 1e-12 leaves
// room for sums of a few hundred terms of mixed sign; any real dependence on the
// split would be far larger).
TEST(GptFullGrad, DeterministicAndThreadCountOnlyReordersSums) {
  const TinyGptSpec spec{2, 2, 16, 13, 40, 21};
  const GptConfig config = tiny_config(spec);
  const auto weights = gpt_weights_from_tensors<double>(config, tiny_model_tensors(spec, true), "tiny");
  const TokenBatch batch = random_tokens(3, 37, config.vocab_size, 23);
  set_num_threads(1);
  const auto one = gpt_loss_and_full_grad<double>(weights, nullptr, batch);
  set_num_threads(2);
  const auto two = gpt_loss_and_full_grad<double>(weights, nullptr, batch);
  const auto again = gpt_loss_and_full_grad<double>(weights, nullptr, batch);
  set_num_threads(0);
  EXPECT_EQ(two.loss, again.loss);
  const auto a = gpt_named_tensors(two.d_weights), b = gpt_named_tensors(again.d_weights);
  for (std::size_t k = 0; k < a.size(); ++k) EXPECT_TRUE(bitwise_equal(*a[k].second, *b[k].second)) << a[k].first;
  EXPECT_NEAR(one.loss, two.loss, 1e-12 * one.loss);
  EXPECT_LT(relative_difference(two.d_weights, one.d_weights), 1e-12);
}

// float against double on the same (double) weights, every tensor on its own
// relative to its norm. As for the adapter gradients (test_gpt_grad.cpp), values
// pass through ~10 layers of sums of at most 4D = 64 terms, a softmax over T keys
// and one over V, so the relative error is a small multiple of u_f32 = 6e-8 times
// the depth; the parameter gradients add one sum over the M = N*T = 66 token rows
// (accumulated in double for biases and layer norms, in float by BLAS for the
// matrices). Measured worst tensor 6e-7 (h.0.ln_1.weight), 3e-7 overall; 2e-5 (~330
// u_f32, 35x the worst) bounds it with margin, while a wrong term would give O(1e-2).
TEST(GptFullGrad, FloatTracksDouble) {
  const TinyGptSpec spec{2, 2, 16, 13, 40, 31};
  const GptConfig config = tiny_config(spec);
  const TensorMap tensors = tiny_model_tensors(spec, false);
  const auto w64 = gpt_weights_from_tensors<double>(config, tensors, "tiny");
  const auto w32 = gpt_weights_from_tensors<float>(config, tensors, "tiny");
  const TokenBatch batch = random_tokens(2, 33, config.vocab_size, 33);
  const auto ref = gpt_loss_and_full_grad<double>(w64, nullptr, batch);
  const auto got = gpt_loss_and_full_grad<float>(w32, nullptr, batch);
  EXPECT_NEAR(got.loss, ref.loss, 1e-5 * ref.loss);
  const auto g = gpt_named_tensors(got.d_weights), r = gpt_named_tensors(ref.d_weights);
  for (std::size_t k = 0; k < r.size(); ++k) {
    ASSERT_EQ(g[k].second->dtype(), DType::f32);
    double diff = 0, norm = 0;
    for (std::int64_t i = 0; i < r[k].second->numel(); ++i) {
      const double x = g[k].second->at(i), y = r[k].second->at(i);
      diff += (x - y) * (x - y);
      norm += y * y;
    }
    EXPECT_LT(std::sqrt(diff / norm), 2e-5) << r[k].first;
  }
  EXPECT_LT(relative_difference(got.d_weights, ref.d_weights), 2e-5);
}

TEST(GptFullGrad, NamedTensorsFollowTheGpt2Layout) {
  const TinyGptSpec spec{2, 2, 8, 11, 9, 1};
  const GptConfig config = tiny_config(spec);
  const TensorMap tensors = tiny_model_tensors(spec, true);
  const auto weights = gpt_weights_from_tensors<double>(config, tensors, "tiny");
  const auto named = gpt_named_tensors(weights);
  EXPECT_EQ(named.size(), tensors.size());
  for (const auto& [name, tensor] : named) {
    ASSERT_TRUE(tensors.count("transformer." + name)) << name;
    EXPECT_TRUE(bitwise_equal(*tensor, tensors.at("transformer." + name))) << name;
  }
  EXPECT_EQ(named.front().first, "wte.weight");
  EXPECT_EQ(named.back().first, "ln_f.bias");
  EXPECT_EQ(gpt_tensor_prefix(tensors), "transformer.");
  EXPECT_EQ(gpt_tensor_prefix(tiny_model_tensors(spec, false)), "");
  const auto zero = zero_gpt_weights<float>(config);
  const auto zero_named = gpt_named_tensors(zero);
  for (std::size_t k = 0; k < named.size(); ++k) {
    EXPECT_EQ(zero_named[k].second->shape(), named[k].second->shape()) << named[k].first;
    EXPECT_EQ(zero_named[k].second->dtype(), DType::f32);
  }
}

}  // namespace
}  // namespace lorafast
