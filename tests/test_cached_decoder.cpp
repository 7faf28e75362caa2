// Decoding with the KV cache against the full recompute: at every step the cached
// logits equal model_next_logits of the whole context (GPT-2 and Llama-family
// models: grouped-query heads, Qwen2's biases, Gemma 3's parts with a window shorter
// than the context; with and without an adapter), greedy decoding
// gives the same tokens, and the capacity is enforced.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "lorafast/decoder.hpp"
#include "lorafast/generate.hpp"
#include "support/tiny_gpt.hpp"
#include "support/tiny_llama.hpp"

namespace lorafast {
namespace {

// The bound on |cached - full| per logit, relative to 1 + max |full logit|:
// f64: the same function in IEEE double, differing in summation order only (BLAS
//   GEMV vs GEMM, the decode kernel vs the tiled exact attention, a double-accumulated
//   LM head vs BLAS): ~1e-15 expected, 1e-12 leaves three orders for depth.
// f32: both sides round every activation to f32 (2^-24); over two blocks of O(1)
//   activations that is ~1e-6 of the logit scale; 2e-5 (about 150 f32 ulps) is the
//   f32 rule of test_finetune_cli's losses.
template <class T>
constexpr double tolerance = std::is_same_v<T, double> ? 1e-12 : 2e-5;

double max_abs(const std::vector<double>& x) {
  double m = 0;
  for (double v : x) m = std::max(m, std::abs(v));
  return m;
}

template <class W, class T = typename W::value_type>
void expect_steps_match(const W& w, const GptLora<T>* lora, const std::string& what) {
  const std::int64_t capacity = w.config.n_positions, vocab = w.config.vocab_size;
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<std::int32_t> token(0, static_cast<std::int32_t>(vocab - 1));
  std::vector<std::int32_t> context{token(rng), token(rng), token(rng)};
  CachedDecoder<W> decoder(w, lora, capacity);
  const std::vector<double>* cached = &decoder.prefill(context);
  double worst = 0;
  while (true) {
    const auto full = model_next_logits(w, lora, context);
    ASSERT_EQ(cached->size(), full.size());
    for (std::size_t j = 0; j < full.size(); ++j)
      worst = std::max(worst, std::abs((*cached)[j] - full[j]) / (1 + max_abs(full)));
    ASSERT_LE(worst, tolerance<T>) << what << " at length " << context.size();
    ASSERT_EQ(decoder.length(), static_cast<std::int64_t>(context.size()));
    if (decoder.length() == capacity) break;
    context.push_back(token(rng));
    cached = &decoder.step(context.back());
  }
  EXPECT_THROW(decoder.step(0), Error) << what << ": the cache is full";
  EXPECT_THROW(decoder.prefill(context), Error) << what << ": prefill needs an empty cache";
  EXPECT_THROW((CachedDecoder<W>(w, lora, capacity + 1)), Error) << what << ": capacity above the model's positions";
  CachedDecoder<W> fresh(w, lora, 4);
  EXPECT_THROW(fresh.step(0), Error) << what << ": a step before the prefill";
  const std::int32_t bad[] = {0, static_cast<std::int32_t>(vocab)};
  EXPECT_THROW(fresh.prefill(bad), Error) << what << ": a token outside the vocabulary";
  std::cout << what << ": worst relative difference " << worst << " over " << capacity << " positions\n";
}

// Greedy decoding through generate() (cached) equals argmax over full recomputes.
template <class W, class T = typename W::value_type>
void expect_greedy_matches(const W& w, const GptLora<T>* lora, const std::string& what) {
  const std::vector<std::int32_t> prompt{1, 4};
  GenerateOptions options;
  options.max_tokens = w.config.n_positions - 1;  // fills the cache: prompt + max_tokens - 1 positions
  options.sampling.greedy = true;
  const auto got = generate(w, lora, prompt, options).tokens;
  std::vector<std::int32_t> context = prompt, expect;
  for (std::int64_t i = 0; i < options.max_tokens; ++i) {
    const auto logits = model_next_logits(w, lora, context);
    const auto token = static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    expect.push_back(token);
    context.push_back(token);
  }
  EXPECT_EQ(got, expect) << what;
}

template <class T>
void check_gpt() {
  const testing::TinyGptSpec spec{2, 2, 8, 11, 12, 3};
  const auto w = gpt_weights_from_tensors<T>(testing::tiny_config(spec), testing::tiny_model_tensors(spec, false), "tiny");
  LoraConfig lc;
  lc.rank = 2;
  lc.targets = {all_lora_targets.begin(), all_lora_targets.end()};
  const auto lora = testing::random_lora<T>(w.config, lc, 4);
  for (const GptLora<T>* adapter : {static_cast<const GptLora<T>*>(nullptr), &lora}) {
    const std::string what = cat("gpt2/", sizeof(T) == 8 ? "f64" : "f32", adapter ? "/lora" : "");
    expect_steps_match(w, adapter, what);
    expect_greedy_matches(w, adapter, what);
  }
}

template <class T>
void check_llama(const testing::TinyLlamaSpec& spec) {
  const auto w = testing::tiny_llama<T>(spec);
  LoraConfig lc;
  lc.rank = 2;
  lc.targets = model_lora_targets(w.config);  // all-linear
  const auto lora = testing::random_lora<T>(w.config, lc, 6);
  for (const GptLora<T>* adapter : {static_cast<const GptLora<T>*>(nullptr), &lora}) {
    const std::string what = cat(spec.model_type, "/K", spec.kv_heads, "/", sizeof(T) == 8 ? "f64" : "f32",
                                 adapter ? "/lora" : "");
    expect_steps_match(w, adapter, what);
    expect_greedy_matches(w, adapter, what);
  }
}

TEST(CachedDecoder, GptStepsEqualFullRecompute) {
  check_gpt<double>();
  check_gpt<float>();
}

TEST(CachedDecoder, LlamaGroupedQueryStepsEqualFullRecompute) {
  testing::TinyLlamaSpec llama;  // 4 query heads, 2 K/V heads
  testing::TinyLlamaSpec qwen;   // q/k/v biases, one K/V head, tied head
  qwen.model_type = "qwen2";
  qwen.kv_heads = 1;
  qwen.tied = true;
  testing::TinyLlamaSpec gemma;  // window 3 on layer 0, soft-capped logits, the four norms, tied head
  gemma.model_type = "gemma3_text";
  gemma.tied = true;
  for (const auto& spec : {llama, qwen, gemma}) {
    check_llama<double>(spec);
    check_llama<float>(spec);
  }
}

}  // namespace
}  // namespace lorafast
