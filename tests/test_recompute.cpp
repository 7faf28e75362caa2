// Recompute (gpt_loss.hpp): a backward pass that keeps only each block's input and
// reruns the block must give the same bits as one that keeps every activation, for
// GPT-2 and the Llama family, LoRA and full-parameter gradients, exact attention and
// surrogate heads (the recomputation must rerun the forward's plan, not replan), over
// T = 150 (crossing the 64-row tiles and the 128-row causal chunk).
#include <gtest/gtest.h>

#include <algorithm>

#include "lorafast/pretrain.hpp"
#include "lorafast/threads.hpp"
#include "model/gpt_activations.hpp"
#include "support/tiny_gpt.hpp"

namespace lorafast {
namespace {

using testing::random_lora;
using testing::random_tokens;

constexpr std::int64_t seq_len = 150;

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::equal(a.bytes(), a.bytes() + a.nbytes(), b.bytes(), b.bytes() + b.nbytes());
}

void expect_same(const std::vector<LoraLayer>& a, const std::vector<LoraLayer>& b) {
  ASSERT_EQ(a.size(), b.size());
  std::int64_t adapters = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t t = 0; t < lora_target_count; ++t) {
      ASSERT_EQ(a[i][t].has_value(), b[i][t].has_value());
      if (!a[i][t]) continue;
      ++adapters;
      EXPECT_TRUE(same_bits(a[i][t]->a, b[i][t]->a)) << "layer " << i << " target " << t;
      EXPECT_TRUE(same_bits(a[i][t]->b, b[i][t]->b)) << "layer " << i << " target " << t;
    }
  EXPECT_GT(adapters, 0);
}

void expect_same(const GptAttentionPlan& a, const GptAttentionPlan& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].size(), b[i].size());
    for (std::size_t h = 0; h < a[i].size(); ++h) {
      EXPECT_EQ(a[i][h].method, b[i][h].method);
      EXPECT_EQ(a[i][h].degree, b[i][h].degree);
    }
  }
}

AttentionRequest requested(Method method, std::optional<int> degree = std::nullopt) {
  AttentionRequest r;
  r.method = method;
  r.degree = degree;
  return r;
}

// Exact heads, and surrogate heads of forced degree 2 (certified or not, they differ
// from exact ones, so a recomputation that replanned or ran exact would show).
const AttentionRequest requests[] = {requested(Method::exact), requested(Method::fast, 2),
                                     requested(Method::chained, 2)};

template <class W>
void check_lora(const W& weights, const GptLora<double>& lora, const TokenBatch& batch) {
  for (const auto& request : requests) {
    SCOPED_TRACE(static_cast<int>(request.method));
    const auto kept = model_loss_and_grad(weights, lora, batch, request, Recompute::never);
    const auto recomputed = model_loss_and_grad(weights, lora, batch, request, Recompute::always);
    EXPECT_EQ(kept.loss, recomputed.loss);
    expect_same(kept.d_lora, recomputed.d_lora);
    expect_same(kept.plan, recomputed.plan);
    if (request.method != Method::exact) {
      EXPECT_EQ(kept.plan[0][0].method, request.method);
    }
  }
}

GptWeights<double> tiny_gpt() {
  const testing::TinyGptSpec spec{3, 2, 8, 11, 200, 5};
  return gpt_weights_from_tensors<double>(testing::tiny_config(spec), testing::tiny_model_tensors(spec, false),
                                          "tiny");
}

GptConfig tiny_llama() {
  GptConfig c;
  c.family = ModelFamily::llama;
  c.n_layer = 3;
  c.n_head = 4;
  c.n_embd = 12;
  c.n_positions = 256;
  c.vocab_size = 13;
  c.layer_norm_epsilon = 1e-5;
  c.llama.n_kv_head = 2;
  c.llama.head_dim = 4;
  c.llama.intermediate_size = 10;
  c.llama.qkv_bias = true;
  c.validate("tiny llama");
  return c;
}

LoraConfig all_linear(const GptConfig& model) {
  LoraConfig c;
  c.rank = 2;
  c.alpha = 4.0;
  c.targets = model.is_llama() ? std::vector<LoraTarget>{LoraTarget::q_proj, LoraTarget::k_proj, LoraTarget::v_proj,
                                                         LoraTarget::o_proj, LoraTarget::gate_proj,
                                                         LoraTarget::up_proj, LoraTarget::down_proj}
                               : std::vector<LoraTarget>{LoraTarget::attn_c_attn, LoraTarget::attn_c_proj,
                                                         LoraTarget::mlp_c_fc, LoraTarget::mlp_c_proj};
  return c;
}

TEST(Recompute, GptLoraGradientsAreBitIdentical) {
  set_num_threads(2);
  const auto w = tiny_gpt();
  check_lora(w, random_lora<double>(w.config, all_linear(w.config), 6), random_tokens(2, seq_len, 11, 7));
  set_num_threads(0);
}

TEST(Recompute, LlamaLoraGradientsAreBitIdentical) {
  set_num_threads(2);
  const auto w = init_llama_weights<double>(tiny_llama(), 8);
  check_lora(w, random_lora<double>(w.config, all_linear(w.config), 9), random_tokens(2, seq_len, 13, 10));
  set_num_threads(0);
}

TEST(Recompute, FullGradientsAreBitIdentical) {
  set_num_threads(2);
  const auto gpt = tiny_gpt();
  const auto gpt_lora = random_lora<double>(gpt.config, all_linear(gpt.config), 11);
  const TokenBatch gpt_batch = random_tokens(1, seq_len, 11, 12);
  const auto a = gpt_loss_and_full_grad(gpt, &gpt_lora, gpt_batch, Recompute::never);
  const auto b = gpt_loss_and_full_grad(gpt, &gpt_lora, gpt_batch, Recompute::always);
  EXPECT_EQ(a.loss, b.loss);
  expect_same(a.d_lora, b.d_lora);
  const auto ga = gpt_named_tensors(a.d_weights), gb = gpt_named_tensors(b.d_weights);
  ASSERT_EQ(ga.size(), gb.size());
  for (std::size_t i = 0; i < ga.size(); ++i) EXPECT_TRUE(same_bits(*ga[i].second, *gb[i].second)) << ga[i].first;

  const auto llama = init_llama_weights<double>(tiny_llama(), 13);
  const TokenBatch llama_batch = random_tokens(1, seq_len, 13, 14);
  const auto c = llama_loss_and_full_grad(llama, static_cast<const GptLora<double>*>(nullptr), llama_batch, Recompute::never);
  const auto d = llama_loss_and_full_grad(llama, static_cast<const GptLora<double>*>(nullptr), llama_batch, Recompute::always);
  EXPECT_EQ(c.loss, d.loss);
  const auto lc = llama_named_tensors(c.d_weights), ld = llama_named_tensors(d.d_weights);
  ASSERT_EQ(lc.size(), ld.size());
  for (std::size_t i = 0; i < lc.size(); ++i) EXPECT_TRUE(same_bits(*lc[i].tensor, *ld[i].tensor)) << lc[i].name;
  set_num_threads(0);
}

// automatic keeps everything while it fits in a quarter of physical memory.
TEST(Recompute, AutomaticRecomputesOnlyWhatWouldNotFit) {
  EXPECT_EQ(keep_for_backward(Recompute::never), Keep::all);
  EXPECT_EQ(keep_for_backward(Recompute::always), Keep::inputs);
  EXPECT_EQ(resolve_keep(Keep::all_if_fits, 12, 1 << 20), Keep::all);
  EXPECT_EQ(resolve_keep(Keep::all_if_fits, 1 << 20, std::size_t{1} << 40), Keep::inputs);
  EXPECT_EQ(resolve_keep(Keep::last, 1 << 20, std::size_t{1} << 40), Keep::last);
}

}  // namespace
}  // namespace lorafast
