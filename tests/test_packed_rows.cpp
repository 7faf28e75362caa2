// Packed instruction rows (sft_rows.hpp): a row holding several documents must give
// the loss and gradients of its documents run one by one (each its own window, from
// position 0), for learned positions (GPT-2) and RoPE (Llama), adapter and full
// gradients, in f64 to 1e-10 relative (the two differ only in summation order); and
// the packing, batching and row order themselves.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "lorafast/gpt_generate.hpp"
#include "lorafast/sft_rows.hpp"
#include "support/tiny_gpt.hpp"
#include "support/tiny_llama.hpp"

namespace lorafast {
namespace {

using testing::random_lora;

constexpr std::int32_t no = no_target;

// Documents of awkward lengths (1 token, a whole row, ...) with some labels masked.
std::vector<SftExample> documents(std::int64_t vocab, std::uint64_t seed) {
  SplitMix64Rng rng(seed);
  std::vector<SftExample> docs;
  for (std::size_t len : {7u, 3u, 16u, 1u, 5u, 9u, 2u}) {
    SftExample e;
    for (std::size_t i = 0; i < len; ++i) {
      const auto id = static_cast<std::int32_t>(rng.next() % static_cast<std::uint64_t>(vocab));
      e.input_ids.push_back(id);
      e.labels.push_back(rng.next() % 3 == 0 ? no : id);
    }
    docs.push_back(std::move(e));
  }
  return docs;
}

LoraConfig all_linear(const GptConfig& model) {
  LoraConfig c;
  c.rank = 2;
  c.alpha = 4.0;
  c.targets = model_lora_targets(model);
  return c;
}

double relative(const std::vector<LoraLayer>& got, const std::vector<LoraLayer>& ref) {
  return testing::lora_relative_difference(got, ref);
}

// sum of `parts` into `acc` (laid out alike).
void add(std::vector<LoraLayer>& acc, const std::vector<LoraLayer>& part) {
  for (std::size_t i = 0; i < acc.size(); ++i)
    for (std::size_t t = 0; t < lora_target_count; ++t)
      if (acc[i][t])
        for (auto [a, b] : {std::pair{&acc[i][t]->a, &part[i][t]->a}, std::pair{&acc[i][t]->b, &part[i][t]->b}}) {
          double* x = a->data<double>();
          const double* y = b->data<double>();
          for (std::int64_t k = 0; k < a->numel(); ++k) x[k] += y[k];
        }
}

template <class W>
void check_packed_equals_one_by_one(const W& weights) {
  const auto lora = random_lora<double>(weights.config, all_linear(weights.config), 3);
  const auto docs = documents(weights.config.vocab_size, 4);
  const SftRows packed = pack_examples(docs, 16, Packing::bfd);
  ASSERT_LT(packed.rows(), static_cast<std::int64_t>(docs.size()));  // some row holds several documents
  std::vector<std::int64_t> all(static_cast<std::size_t>(packed.rows()));
  std::iota(all.begin(), all.end(), 0);
  TokenBatch batch = sft_batch(packed, all);
  const std::int64_t predicted = batch.targeted();
  EXPECT_EQ(predicted, packed.label_tokens());
  batch.loss_tokens = predicted;
  const auto together = model_loss_and_grad(weights, lora, batch, AttentionRequest{}, Recompute::never);

  const SftRows alone = pack_examples(docs, 16, Packing::none);
  double loss = 0;
  std::optional<std::vector<LoraLayer>> grads;
  for (std::int64_t r = 0; r < alone.rows(); ++r) {
    const std::int64_t one[] = {r};
    TokenBatch b = sft_batch(alone, one);
    b.loss_tokens = predicted;
    auto g = model_loss_and_grad(weights, lora, b, AttentionRequest{}, Recompute::never);
    loss += g.loss;
    if (grads) add(*grads, g.d_lora);
    else grads = std::move(g.d_lora);
  }
  EXPECT_NEAR(together.loss, loss, 1e-10 * std::abs(loss));
  EXPECT_LT(relative(together.d_lora, *grads), 1e-10);
  EXPECT_GT(loss, 0);
}

GptWeights<double> tiny_gpt() {
  const testing::TinyGptSpec spec{2, 2, 8, 11, 20, 5};
  return gpt_weights_from_tensors<double>(testing::tiny_config(spec), testing::tiny_model_tensors(spec, false), "tiny");
}

TEST(PackedRows, GptRowEqualsItsDocumentsOneByOne) { check_packed_equals_one_by_one(tiny_gpt()); }

TEST(PackedRows, LlamaRowEqualsItsDocumentsOneByOne) {
  check_packed_equals_one_by_one(testing::tiny_llama<double>(testing::TinyLlamaSpec{}));
}

// The position table's gradient sees each document's rows at their own positions.
TEST(PackedRows, GptFullGradientEqualsItsDocumentsOneByOne) {
  const auto w = tiny_gpt();
  const auto docs = documents(w.config.vocab_size, 6);
  const SftRows packed = pack_examples(docs, 16, Packing::bfd);
  std::vector<std::int64_t> all(static_cast<std::size_t>(packed.rows()));
  std::iota(all.begin(), all.end(), 0);
  TokenBatch batch = sft_batch(packed, all);
  batch.loss_tokens = batch.targeted();
  const auto together = gpt_loss_and_full_grad(w, static_cast<const GptLora<double>*>(nullptr), batch);
  const SftRows alone = pack_examples(docs, 16, Packing::none);
  double loss = 0;
  std::optional<GptWeights<double>> sum;
  for (std::int64_t r = 0; r < alone.rows(); ++r) {
    const std::int64_t one[] = {r};
    TokenBatch b = sft_batch(alone, one);
    b.loss_tokens = batch.loss_tokens;
    auto g = gpt_loss_and_full_grad(w, static_cast<const GptLora<double>*>(nullptr), b);
    loss += g.loss;
    if (!sum) {
      sum = std::move(g.d_weights);
      continue;
    }
    const auto acc = gpt_named_tensors(*sum);
    const auto part = gpt_named_tensors(std::as_const(g.d_weights));
    for (std::size_t k = 0; k < acc.size(); ++k)
      for (std::int64_t i = 0; i < acc[k].second->numel(); ++i)
        acc[k].second->data<double>()[i] += part[k].second->data<double>()[i];
  }
  EXPECT_NEAR(together.loss, loss, 1e-10 * loss);
  const auto got = gpt_named_tensors(together.d_weights);
  const auto want = gpt_named_tensors(*sum);
  for (std::size_t k = 0; k < got.size(); ++k) {
    double diff = 0, norm = 0;
    for (std::int64_t i = 0; i < got[k].second->numel(); ++i) {
      const double a = got[k].second->data<double>()[i], b = want[k].second->data<double>()[i];
      diff += (a - b) * (a - b);
      norm += b * b;
    }
    EXPECT_LE(std::sqrt(diff), 1e-10 * std::sqrt(norm) + 1e-300) << got[k].first;
  }
}

// TRL's pack_dataset docstring example: lengths 5, 2, 3, 1 into rows of 4 give
// [[1, 2, 3, 4], [8, 9, 10, 11], [6, 7]] with seq_lengths [[4], [3, 1], [2]].
TEST(PackedRows, BestFitDecreasingAsTrl) {
  std::vector<SftExample> docs = {{{1, 2, 3, 4, 5}, {1, 2, 3, 4, 5}}, {{6, 7}, {6, 7}}, {{8, 9, 10}, {8, 9, 10}},
                                  {{11}, {11}}};
  const SftRows rows = pack_examples(docs, 4, Packing::bfd);
  ASSERT_EQ(rows.rows(), 3);
  const std::vector<std::vector<std::vector<std::int32_t>>> want = {{{1, 2, 3, 4}}, {{8, 9, 10}, {11}}, {{6, 7}}};
  for (std::int64_t r = 0; r < 3; ++r) {
    ASSERT_EQ(rows.row(r).size(), want[static_cast<std::size_t>(r)].size()) << "row " << r;
    for (std::size_t d = 0; d < rows.row(r).size(); ++d)
      EXPECT_EQ(rows.row(r)[d].input_ids, want[static_cast<std::size_t>(r)][d]) << "row " << r << " doc " << d;
  }
  const SftRows wrapped = pack_examples(docs, 4, Packing::wrapped);
  ASSERT_EQ(wrapped.rows(), 3);
  EXPECT_EQ(wrapped.row(1)[0].input_ids, (std::vector<std::int32_t>{5, 6, 7, 8}));
  EXPECT_EQ(wrapped.row(2)[0].input_ids, (std::vector<std::int32_t>{9, 10, 11}));
}

// A batch: T is the longest row, every document's last token and the padding
// predict nothing, and the padding is a document of its own.
TEST(PackedRows, BatchLayout) {
  const SftRows rows = pack_examples({{{1, 2, 3}, {no, 2, 3}}, {{4, 5}, {4, 5}}, {{6}, {6}}}, 5, Packing::bfd);
  ASSERT_EQ(rows.rows(), 2);  // [1 2 3 | 4 5], [6]
  const std::int64_t both[] = {0, 1};
  const TokenBatch b = sft_batch(rows, both);
  EXPECT_EQ(b.seq_len, 5);
  EXPECT_EQ(b.tokens, (std::vector<std::int32_t>{1, 2, 3, 4, 5, 0, 6, 0, 0, 0, 0, 0}));
  EXPECT_EQ(b.targets, (std::vector<std::int32_t>{2, 3, no, 5, no, no, no, no, no, no}));
  EXPECT_EQ(b.cu_seqlens, (std::vector<std::int64_t>{0, 3, 5, 6, 10}));
  EXPECT_EQ(b.positions(), (std::vector<std::int32_t>{0, 1, 2, 0, 1, 0, 0, 1, 2, 3}));
  EXPECT_EQ(b.targeted(), 3);
}

// Every epoch visits every row once, in an order of its own; micro-batches take
// consecutive slices.
TEST(PackedRows, RowOrderVisitsEveryRowOncePerEpoch) {
  const std::int64_t rows = 7, batch = 3, accum = 2;
  std::vector<std::int64_t> seen;
  for (std::int64_t step = 1; step <= 7; ++step)
    for (std::int64_t micro = 0; micro < accum; ++micro) {
      const auto part = sft_row_indices(rows, batch, accum, 42, step, micro);
      seen.insert(seen.end(), part.begin(), part.end());
    }
  ASSERT_EQ(seen.size(), 42u);
  for (std::size_t epoch = 0; epoch < 6; ++epoch) {
    const std::set<std::int64_t> visited(seen.begin() + static_cast<std::ptrdiff_t>(epoch * rows),
                                         seen.begin() + static_cast<std::ptrdiff_t>((epoch + 1) * rows));
    EXPECT_EQ(visited.size(), static_cast<std::size_t>(rows)) << "epoch " << epoch;
  }
  EXPECT_NE(std::vector<std::int64_t>(seen.begin(), seen.begin() + rows),
            std::vector<std::int64_t>(seen.begin() + rows, seen.begin() + 2 * rows));
  EXPECT_EQ(sft_row_indices(rows, batch, accum, 42, 3, 1), sft_row_indices(rows, batch, accum, 42, 3, 1));
}

}  // namespace
}  // namespace lorafast
