// extend_positions (gpt.hpp): the position table repeated past n_positions.
#include <gtest/gtest.h>

#include "support/tiny_gpt.hpp"

namespace lorafast {
namespace {

using testing::random_lora;
using testing::random_tokens;
using testing::tiny_config;
using testing::tiny_model_tensors;
using testing::TinyGptSpec;

TEST(GptPositions, RepeatsTheTrainedRows) {
  const TinyGptSpec spec{2, 2, 8, 11, 9, 3};
  const auto base = gpt_weights_from_tensors<double>(tiny_config(spec), tiny_model_tensors(spec, false), "tiny");
  auto extended = base;
  extend_positions(extended, 25);
  ASSERT_EQ(extended.config.n_positions, 25);
  ASSERT_EQ(extended.wpe.shape(), (Shape{25, 8}));
  for (std::int64_t t = 0; t < 25; ++t)
    for (std::int64_t c = 0; c < 8; ++c) EXPECT_EQ(extended.wpe.at(t * 8 + c), base.wpe.at((t % 9) * 8 + c));

  // Unchanged up to n_positions, bit for bit; longer sequences now run.
  LoraConfig lc;
  lc.rank = 2;
  const auto lora = random_lora<double>(base.config, lc, 4);
  const TokenBatch short_batch = random_tokens(2, 9, spec.vocab, 5);
  EXPECT_EQ(gpt_loss(extended, &lora, short_batch), gpt_loss(base, &lora, short_batch));
  const TokenBatch long_batch = random_tokens(1, 25, spec.vocab, 6);
  EXPECT_THROW(gpt_loss(base, &lora, long_batch), Error);
  EXPECT_GT(gpt_loss_and_grad(extended, lora, long_batch).loss, 0.0);
}

TEST(GptPositions, OnlyExtends) {
  const TinyGptSpec spec;
  auto w = gpt_weights_from_tensors<float>(tiny_config(spec), tiny_model_tensors(spec, false), "tiny");
  for (std::int64_t bad : {spec.positions - 1, (std::int64_t{1} << 24) + 1}) {
    try {
      extend_positions(w, bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::usage);
      EXPECT_NE(std::string(e.what()).find("`positions`"), std::string::npos) << e.what();
    }
  }
  extend_positions(w, spec.positions);  // a no-op
  EXPECT_EQ(w.config.n_positions, spec.positions);
}

}  // namespace
}  // namespace lorafast
