// The optimized GPT-2 + LoRA forward (low-rank side paths, tiled attention, chunked
// LM head, BLAS) against the scalar reference (merged weights, dense attention).
// With the finite-difference checks of test_gpt_grad.cpp this closes the chain
// reference -> forward -> backward inside the C++ suite.
#include <gtest/gtest.h>

#include <cmath>

#include "ref/gpt_reference.hpp"
#include "support/tiny_gpt.hpp"

namespace lorafast {
namespace {

using testing::random_lora;
using testing::random_tokens;
using testing::tiny_config;
using testing::tiny_model_tensors;
using testing::TinyGptSpec;

struct RefCase {
  TinyGptSpec spec;
  std::int64_t rank, batch, seq_len;
  std::string qkv;
};

// Double against double: the two differ in summation order and in applying LoRA
// merged or as a side path, i.e. by a few ulps of O(1) intermediates amplified
// through ~10 layers; measured ~1e-15, and 1e-12 relative leaves margin while a
// wrong term moves the loss by far more.
TEST(GptReference, OptimizedForwardMatchesTheReference) {
  const std::vector<RefCase> cases = {
      {{2, 2, 8, 11, 9, 1}, 2, 2, 5, "qkv"},
      {{1, 3, 6, 7, 4, 2}, 1, 3, 1, "qv"},
      {{3, 1, 4, 5, 8, 3}, 3, 1, 7, "k"},
      {{1, 3, 12, 13, 80, 4}, 4, 2, 70, "qkv"},  // T crosses a 64-row tile; 140 rows span 5 LM-head chunks
  };
  for (const auto& c : cases) {
    const GptConfig config = tiny_config(c.spec);
    SCOPED_TRACE(cat("L", config.n_layer, "/D", config.n_embd, "/T", c.seq_len, "/", c.qkv));
    const auto weights = gpt_weights_from_tensors<double>(config, tiny_model_tensors(c.spec, true), "tiny");
    LoraConfig lc;
    lc.rank = c.rank;
    lc.alpha = 3.0;
    lc.targets.assign(all_lora_targets.begin(), all_lora_targets.end());
    lc.c_attn_qkv = parse_qkv_subset(c.qkv);
    const auto lora = random_lora<double>(config, lc, c.spec.seed + 5);
    const TokenBatch batch = random_tokens(c.batch, c.seq_len, config.vocab_size, c.spec.seed + 6);
    const double ref = ref::gpt_loss(weights, &lora, batch);
    EXPECT_NEAR(gpt_loss(weights, &lora, batch), ref, 1e-12 * ref);
    EXPECT_NEAR(gpt_loss_and_grad(weights, lora, batch).loss, ref, 1e-12 * ref);
    const double base = ref::gpt_loss(weights, nullptr, batch);
    EXPECT_NEAR(gpt_loss<double>(weights, nullptr, batch), base, 1e-12 * base);
    EXPECT_GT(std::abs(ref - base), 1e-3 * base);  // the adapters matter in these cases
  }
}

}  // namespace
}  // namespace lorafast
