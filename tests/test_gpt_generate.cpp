// Next-token logits against the model's own loss, and sampling.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "lorafast/generate.hpp"
#include "lorafast/gpt_generate.hpp"
#include "lorafast/gpt_loss.hpp"
#include "support/tiny_gpt.hpp"

namespace lorafast {
namespace {

const testing::TinyGptSpec spec{2, 2, 8, 11, 9, 3};

TEST(NextLogits, CrossEntropyOfLastPositionMatchesLoss) {
  const auto w = gpt_weights_from_tensors<double>(testing::tiny_config(spec), testing::tiny_model_tensors(spec, false), "tiny");
  LoraConfig lc;
  lc.rank = 2;
  lc.targets = {LoraTarget::attn_c_attn, LoraTarget::mlp_c_proj};
  const auto lora = testing::random_lora<double>(w.config, lc, 4);
  // With T = 1 the loss of window (c, t) is -log softmax(logits(c))[t].
  for (const GptLora<double>* adapter : {static_cast<const GptLora<double>*>(nullptr), &lora}) {
    const std::int32_t context[] = {3};
    const auto logits = gpt_next_logits(w, adapter, context);
    ASSERT_EQ(logits.size(), 11u);
    double max = logits[0];
    for (double l : logits) max = std::max(max, l);
    double sum = 0;
    for (double l : logits) sum += std::exp(l - max);
    const double ce = max + std::log(sum) - logits[7];
    // Same double computation, different summation order: a few ulps of O(1).
    EXPECT_NEAR(ce, gpt_loss(w, adapter, TokenBatch{1, 1, {3, 7}}), 1e-12);
  }
  // A longer context: the last position sees every token (causal), so changing the
  // first token changes the logits.
  const std::int32_t a[] = {1, 2, 3, 4}, b[] = {5, 2, 3, 4};
  EXPECT_NE(gpt_next_logits(w, &lora, a), gpt_next_logits(w, &lora, b));
  const std::vector<std::int32_t> too_long(10, 1);
  EXPECT_THROW(gpt_next_logits(w, &lora, too_long), Error);  // n_positions = 9
}

TEST(Sampling, GreedyTopKAndTemperature) {
  const std::vector<double> logits{0.0, 3.0, 1.0, 3.0, -2.0};
  SplitMix64Rng rng(1);
  EXPECT_EQ(sample_token(logits, {0.0, 0}, rng), 1);  // greedy: the first of the tied largest
  EXPECT_EQ(sample_token(logits, {1.0, 1}, rng), 1);  // top-1
  std::vector<int> counts(5);
  for (int i = 0; i < 4000; ++i) ++counts[static_cast<std::size_t>(sample_token(logits, {1.0, 3}, rng))];
  EXPECT_EQ(counts[0] + counts[4], 0);  // outside the top 3
  // p(2) = e^1 / (2 e^3 + e^1) = 0.0634; 4000 draws: sd = 15, so +-80 is > 5 sd.
  EXPECT_NEAR(counts[2], 4000 * std::exp(1.0) / (2 * std::exp(3.0) + std::exp(1.0)), 80);
  EXPECT_NEAR(counts[1], counts[3], 250);
  SamplingOptions bad{-1.0, 0};
  EXPECT_THROW(bad.validate(), Error);
}

TEST(Sampling, NucleusAndGreedyFlag) {
  // softmax of {log 0.5, log 0.3, log 0.15, log 0.05}: the nucleus of 0.75 is the first
  // two tokens (0.5 < 0.75 <= 0.8), that of 0.8 too (the token that reaches it is in).
  const std::vector<double> logits{std::log(0.5), std::log(0.3), std::log(0.15), std::log(0.05)};
  SplitMix64Rng rng(3);
  std::vector<int> counts(4);
  for (int i = 0; i < 4000; ++i) ++counts[static_cast<std::size_t>(sample_token(logits, {1.0, 0, 0.75}, rng))];
  EXPECT_EQ(counts[2] + counts[3], 0);
  // p(0) = 0.5 / 0.8 = 0.625; 4000 draws: sd = 31, +-160 is > 5 sd.
  EXPECT_NEAR(counts[0], 4000 * 0.625, 160);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(sample_token(logits, {1.0, 0, 0.4}, rng), 0);  // 0.5 >= 0.4: top-1
  EXPECT_EQ(sample_token(logits, {1.0, 0, 1.0, /*greedy=*/true}, rng), 0);
  for (double bad : {0.0, -0.1, 1.5}) EXPECT_THROW((SamplingOptions{1.0, 0, bad}.validate()), Error);
}

TEST(Generate, SeededStreamedAndCapped) {
  const auto w = gpt_weights_from_tensors<float>(testing::tiny_config(spec), testing::tiny_model_tensors(spec, true), "tiny");
  const std::int32_t prompt[] = {1, 2, 3};
  std::vector<std::int32_t> streamed;
  GenerateOptions options;
  options.max_tokens = 7;  // 3 + 7 - 1 = n_positions: the last token is never fed back
  options.sampling = {0.8, 5};
  options.seed = 7;
  const auto a = generate(w, static_cast<const GptLora<float>*>(nullptr), prompt, options,
                          [&](std::int32_t t) { streamed.push_back(t); });
  EXPECT_EQ(a.tokens.size(), 7u);
  EXPECT_EQ(streamed, a.tokens);
  EXPECT_EQ(generate(w, static_cast<const GptLora<float>*>(nullptr), prompt, options).tokens, a.tokens);
  for (auto t : a.tokens) EXPECT_TRUE(t >= 0 && t < 11);
  options.eos = {a.tokens[2]};  // the same draws stop at the first occurrence of that token
  const auto stopped = generate(w, static_cast<const GptLora<float>*>(nullptr), prompt, options);
  EXPECT_TRUE(stopped.stopped_at_eos);
  EXPECT_LE(stopped.tokens.size(), 3u);
  EXPECT_EQ(stopped.tokens.back(), a.tokens[2]);
  EXPECT_TRUE(std::equal(stopped.tokens.begin(), stopped.tokens.end(), a.tokens.begin()));
  options.eos.clear();
  options.max_tokens = 8;  // one position too many
  EXPECT_THROW(generate(w, static_cast<const GptLora<float>*>(nullptr), prompt, options), Error);
  EXPECT_THROW(generate(w, static_cast<const GptLora<float>*>(nullptr), std::span<const std::int32_t>(), options),
               Error);
}

}  // namespace
}  // namespace lorafast
