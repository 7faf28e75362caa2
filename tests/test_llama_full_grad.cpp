// Full-parameter gradient of the Llama-family loss (pretraining): d loss / d every
// base tensor, checked by central finite differences in double along a random
// direction per tensor on tiny models with awkward sizes (grouped-query heads, one
// K/V head, q/k/v and o biases, tied and untied LM heads, T = 1, T crossing the
// attention kernels' 64-row tile, Gemma 3's parts), with and without adapters; the adapter gradients
// it returns alongside must be those of llama_loss_and_grad, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "lorafast/pretrain.hpp"
#include "lorafast/threads.hpp"
#include "support/tiny_gpt.hpp"

namespace lorafast {
namespace {

using testing::random_lora;
using testing::random_tokens;

double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) s += a.at(i) * b.at(i);
  return s;
}

struct Spec {
  std::string name;
  ModelFamily family;
  std::int64_t layers, heads, kv_heads, head_dim, width, ffn, vocab;
  bool tied, attention_bias;
  std::int64_t batch, seq_len;
  bool with_lora = false;
};

GptConfig config_of(const Spec& s) {
  GptConfig c;
  c.family = s.family;
  c.n_layer = s.layers;
  c.n_head = s.heads;
  c.n_embd = s.width;
  c.n_positions = 128;
  c.vocab_size = s.vocab;
  c.layer_norm_epsilon = 1e-5;
  c.llama.n_kv_head = s.kv_heads;
  c.llama.head_dim = s.head_dim;
  c.llama.intermediate_size = s.ffn;
  c.llama.tie_word_embeddings = s.tied;
  c.llama.qkv_bias = s.attention_bias || s.family == ModelFamily::qwen2;
  c.llama.o_bias = s.attention_bias;
  c.llama.rope.theta = 100.0;  // fast rotations: positions matter even at T = 5
  if (s.family == ModelFamily::gemma3) {  // every Gemma 3 part, each changing the loss at these sizes
    c.llama.qk_norm = true;
    c.llama.sliding_window = 3;
    c.llama.sliding_layers.assign(static_cast<std::size_t>(s.layers), false);
    c.llama.sliding_layers[0] = true;
    c.llama.rope.type = RopeConfig::Type::linear;
    c.llama.rope.factor = 2.0;
    c.llama.sliding_rope = RopeConfig{};
    c.llama.sliding_rope->theta = 10.0;
    c.llama.query_pre_attn_scalar = 7;
    // A cap of 1.5 curves the loss enough that the h = 1e-5 difference's truncation
    // error (h^2 L''' / 6) exceeds the bound on one tensor (it passes at h = 2e-6).
    c.llama.final_logit_softcapping = 3.0;
  }
  c.validate("spec");
  return c;
}

// Every tensor random: projections ~ N(0, 1/in), embeddings N(0, 1), norms 1 +
// N(0, 0.2^2), biases N(0, 0.1^2), so no term of the gradient is trivially zero.
LlamaWeights<double> random_weights(const GptConfig& c, std::uint64_t seed) {
  auto w = zero_llama_weights<double>(c);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  for (auto& x : llama_named_tensors(w)) {
    double* p = x.tensor->data<double>();
    const bool vector = x.tensor->shape().size() == 1, bias = x.name.ends_with(".bias");
    const double s = bias ? 0.1 : vector ? 0.2 : x.transposed ? 1.0 / std::sqrt(double(x.tensor->dim(0))) : 1.0;
    for (std::int64_t i = 0; i < x.tensor->numel(); ++i) p[i] = (vector && !bias ? 1.0 : 0.0) + s * normal(rng);
  }
  return w;
}

LoraConfig llama_lora(std::int64_t rank, double alpha) {
  LoraConfig c;
  c.rank = rank;
  c.alpha = alpha;
  c.targets = {LoraTarget::q_proj, LoraTarget::k_proj, LoraTarget::v_proj, LoraTarget::o_proj,
               LoraTarget::gate_proj, LoraTarget::up_proj, LoraTarget::down_proj};
  return c;
}

std::vector<Spec> specs() {
  using F = ModelFamily;
  return {
      {"llama/L2/H4/K2/E4/untied/T5/N2", F::llama, 2, 4, 2, 4, 12, 10, 11, false, false, 2, 5},
      {"llama/L1/H3/K1/E6/tied/bias/T1/N3", F::llama, 1, 3, 1, 6, 7, 9, 7, true, true, 3, 1},
      {"qwen2/L2/H2/K2/E2/tied/T7/N2/lora", F::qwen2, 2, 2, 2, 2, 6, 5, 13, true, false, 2, 7, true},
      {"mistral/L1/H2/K1/E4/untied/T70/N1 (crosses a 64-row tile)", F::mistral, 1, 2, 1, 4, 8, 6, 11, false, false,
       1, 70},
      {"gemma3/L2/H2/K1/E4/tied/T9/N2/lora (window 3 on layer 0)", F::gemma3, 2, 2, 1, 4, 8, 6, 11, true, false, 2, 9,
       true},
  };
}

// Central difference (loss(w + h v) - loss(w - h v)) / 2h against <grad, v>: the
// bound and its reasoning are test_gpt_full_grad.cpp's (truncation O(h^2) and
// rounding ~ u |loss| / h, both ~1e-10 at h = 1e-5, bound 1e-6 ||grad|| ||v||, which a
// wrong term, O(||grad|| ||v|| / sqrt(size)), exceeds).
void check_finite_differences(const Spec& s) {
  SCOPED_TRACE(s.name);
  const GptConfig config = config_of(s);
  auto weights = random_weights(config, s.seq_len + 1);
  std::optional<GptLora<double>> lora;
  if (s.with_lora) lora = random_lora<double>(config, llama_lora(2, 3.0), s.seq_len + 2);
  const GptLora<double>* adapters = lora ? &*lora : nullptr;
  const TokenBatch batch = random_tokens(s.batch, s.seq_len, config.vocab_size, s.seq_len + 3);
  const auto grads = llama_loss_and_full_grad(weights, adapters, batch);
  EXPECT_NEAR(grads.loss, llama_loss(weights, adapters, batch), 1e-12 * grads.loss);
  const auto named_grads = llama_named_tensors(grads.d_weights);
  double total_sq = 0;
  for (const auto& g : named_grads) total_sq += dot(*g.tensor, *g.tensor);
  ASSERT_GT(total_sq, 0.0);

  std::mt19937_64 rng(s.seq_len + 4);
  std::normal_distribution<double> normal;
  const double h = 1e-5;
  auto named_weights = llama_named_tensors(weights);
  ASSERT_EQ(named_weights.size(), named_grads.size());
  for (std::size_t k = 0; k < named_weights.size(); ++k) {
    Tensor& param = *named_weights[k].tensor;
    const Tensor& grad = *named_grads[k].tensor;
    ASSERT_EQ(named_grads[k].name, named_weights[k].name);
    ASSERT_EQ(grad.shape(), param.shape()) << named_weights[k].name;
    Tensor v(DType::f64, param.shape());
    for (std::int64_t i = 0; i < v.numel(); ++i) v.data<double>()[i] = normal(rng);
    auto shift = [&](double step) {
      for (std::int64_t i = 0; i < param.numel(); ++i) param.data<double>()[i] += step * v.at(i);
    };
    shift(h);
    const double plus = llama_loss(weights, adapters, batch);
    shift(-2 * h);
    const double minus = llama_loss(weights, adapters, batch);
    shift(h);
    EXPECT_NEAR((plus - minus) / (2 * h), dot(grad, v), 1e-6 * std::sqrt(total_sq * dot(v, v)))
        << named_weights[k].name;
  }
}

TEST(LlamaFullGrad, FiniteDifferences) {
  set_num_threads(2);
  for (const auto& s : specs()) check_finite_differences(s);
  set_num_threads(0);
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::equal(a.bytes(), a.bytes() + a.nbytes(), b.bytes(), b.bytes() + b.nbytes());
}

// The full pass only adds outputs to the LoRA backward; it changes no arithmetic.
TEST(LlamaFullGrad, AdapterGradientsAreThoseOfTheLoraBackward) {
  const Spec s{"llama", ModelFamily::llama, 2, 4, 2, 4, 16, 24, 13, false, true, 2, 37, true};
  const GptConfig config = config_of(s);
  const auto weights = random_weights(config, 41);
  const auto lora = random_lora<double>(config, llama_lora(3, 6.0), 42);
  const TokenBatch batch = random_tokens(2, 37, config.vocab_size, 43);
  const auto full = llama_loss_and_full_grad(weights, &lora, batch);
  const auto lora_only = llama_loss_and_grad(weights, lora, batch);
  EXPECT_EQ(full.loss, lora_only.loss);
  for (std::size_t i = 0; i < lora.layers.size(); ++i)
    for (std::size_t t = 0; t < lora_target_count; ++t) {
      ASSERT_EQ(full.d_lora[i][t].has_value(), lora_only.d_lora[i][t].has_value());
      if (!full.d_lora[i][t]) continue;
      EXPECT_TRUE(bitwise_equal(full.d_lora[i][t]->a, lora_only.d_lora[i][t]->a));
      EXPECT_TRUE(bitwise_equal(full.d_lora[i][t]->b, lora_only.d_lora[i][t]->b));
    }
}

// transformers' _init_weights: projections and embeddings ~ N(0, initializer_range^2)
// (sample mean and deviation within 5 standard errors: a wrong deviation or a missed
// tensor fails), RMSNorm weights 1, biases 0; a tied model has no lm_head tensor.
TEST(LlamaInit, MatchesTransformersInitWeights) {
  Spec s{"init", ModelFamily::llama, 2, 4, 2, 8, 32, 48, 256, true, true, 1, 1};
  GptConfig config = config_of(s);
  config.llama.initializer_range = 0.05;
  const auto w = init_llama_weights<double>(config, 7);
  EXPECT_TRUE(w.lm_head.empty());
  EXPECT_EQ(w.head().data<double>(), w.embed.data<double>());
  for (const auto& x : llama_named_tensors(w)) {
    const Tensor& t = *x.tensor;
    const auto n = static_cast<double>(t.numel());
    double sum = 0, sq = 0;
    for (std::int64_t i = 0; i < t.numel(); ++i) sum += t.at(i), sq += t.at(i) * t.at(i);
    if (x.name.ends_with(".bias")) {
      EXPECT_EQ(sq, 0.0) << x.name;
    } else if (t.shape().size() == 1) {
      EXPECT_EQ(sum, n) << x.name;
      EXPECT_EQ(sq, n) << x.name;
    } else {
      const double sd = std::sqrt(sq / n);
      EXPECT_NEAR(sum / n, 0.0, 5 * 0.05 / std::sqrt(n)) << x.name;
      EXPECT_NEAR(sd, 0.05, 5 * 0.05 / std::sqrt(2 * n)) << x.name;
    }
  }
  const auto again = init_llama_weights<double>(config, 7);
  EXPECT_TRUE(bitwise_equal(again.embed, w.embed));
}

}  // namespace
}  // namespace lorafast
