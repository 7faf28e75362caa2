// The fine-tuning loop on a tiny random model and a periodic text: the loss falls,
// runs are bit-identical for the same seed and thread count, a run stopped after
// step k, checkpointed, reloaded and continued equals the uninterrupted run bit
// for bit, and corrupt or mismatched checkpoints are rejected.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "lorafast/train_checkpoint.hpp"
#include "support/tiny_gpt.hpp"

namespace lorafast {
namespace {

namespace fs = std::filesystem;

const testing::TinyGptSpec spec{2, 2, 8, 11, 17, 7};

GptWeights<double> model() {
  return gpt_weights_from_tensors<double>(testing::tiny_config(spec), testing::tiny_model_tensors(spec, true), "tiny");
}

TrainValSplit periodic_data() {
  Tokens t(600);
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<std::int32_t>((i * 3 + i / 7) % 5);
  return split_train_val(t, 0.2);
}

LoraConfig lora_config() {
  LoraConfig c;
  c.rank = 4;
  c.alpha = 8;
  c.targets = {LoraTarget::attn_c_attn, LoraTarget::mlp_c_fc};
  c.c_attn_qkv = parse_qkv_subset("qv");
  return c;
}

TrainOptions options(std::int64_t steps) {
  TrainOptions o;
  o.steps = steps;
  o.seq_len = 16;
  o.batch = 3;
  o.grad_accum = 2;
  o.lr = 2e-2;
  o.warmup = 2;
  o.clip = 1.0;
  o.adamw.lora_plus_ratio = 4;
  o.adamw.weight_decay = 0.01;
  o.eval_every = 5;
  o.val_windows = 3;
  o.seed = 42;
  return o;
}

bool same_bits(const std::vector<LoraLayer>& a, const std::vector<LoraLayer>& b) {
  const auto x = lora_tensor_list(a), y = lora_tensor_list(b);
  if (x.size() != y.size()) return false;
  for (std::size_t k = 0; k < x.size(); ++k)
    if (x[k]->shape() != y[k]->shape() || x[k]->nbytes() != y[k]->nbytes() ||
        std::memcmp(x[k]->bytes(), y[k]->bytes(), x[k]->nbytes()) != 0)
      return false;
  return true;
}

struct Run {
  std::vector<StepReport> reports;
  TrainState<double> state;
};

Run run(const GptWeights<double>& w, const TrainOptions& o, std::int64_t stop_after = -1) {
  Run r{{}, init_train_state<double>(w.config, lora_config(), o.seed)};
  TrainCallbacks cb;
  cb.on_step = [&](const StepReport& s) { r.reports.push_back(s); };
  cb.stop_requested = [&] { return r.state.step() == stop_after; };
  const auto outcome = train(w, r.state, periodic_data(), o, cb);
  EXPECT_EQ(outcome, stop_after > 0 && stop_after < o.steps ? TrainOutcome::stopped : TrainOutcome::completed);
  return r;
}

TEST(TrainLoop, LossFallsOnPeriodicText) {
  const auto w = model();
  const auto r = run(w, options(40));
  ASSERT_EQ(r.reports.size(), 40u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += r.reports[static_cast<std::size_t>(i)].loss / 5;
  for (int i = 35; i < 40; ++i) last += r.reports[static_cast<std::size_t>(i)].loss / 5;
  EXPECT_LT(last, 0.7 * first) << "first " << first << " last " << last;
  ASSERT_TRUE(r.reports[4].val_loss && r.reports[39].val_loss);
  EXPECT_FALSE(r.reports[3].val_loss);
  EXPECT_LT(*r.reports[39].val_loss, *r.reports[4].val_loss);
  EXPECT_EQ(r.reports[0].tokens, 2 * 3 * 16);
  EXPECT_EQ(r.reports[0].lr, options(40).schedule().at(1));
  EXPECT_EQ(r.state.step(), 40);
  // The frozen k rows of c_attn's B are still exactly zero.
  const Tensor& b = r.state.lora.at(1, LoraTarget::attn_c_attn)->b;
  for (std::int64_t i = 8 * 4; i < 16 * 4; ++i) ASSERT_EQ(b.at(i), 0.0);
}

TEST(TrainLoop, SameSeedIsBitIdenticalOtherSeedIsNot) {
  const auto w = model();
  const auto a = run(w, options(6)), b = run(w, options(6));
  for (std::size_t i = 0; i < a.reports.size(); ++i) EXPECT_EQ(a.reports[i].loss, b.reports[i].loss) << i;
  EXPECT_TRUE(same_bits(a.state.lora.layers, b.state.lora.layers));
  auto o = options(6);
  o.seed = 43;
  EXPECT_NE(run(w, o).reports[0].loss, a.reports[0].loss);
}

TEST(TrainLoop, StopCheckpointResumeEqualsStraightRun) {
  const auto w = model();
  const auto o = options(9);
  const auto straight = run(w, o);
  auto first = run(w, o, 4);
  ASSERT_EQ(first.state.step(), 4);
  const auto path = fs::temp_directory_path() / "lorafast_test_resume.safetensors";
  save_checkpoint(path, Checkpoint<double>{first.state, o, w.config, fingerprint(periodic_data().train), 0.2});
  auto loaded = load_checkpoint<double>(path, w.config);
  fs::remove(path);
  EXPECT_EQ(loaded.state.step(), 4);
  EXPECT_EQ(loaded.options.seed, o.seed);
  EXPECT_EQ(loaded.options.lr, o.lr);
  EXPECT_EQ(loaded.val_fraction, 0.2);
  EXPECT_EQ(loaded.data, fingerprint(periodic_data().train));
  EXPECT_EQ(loaded.state.lora.config.c_attn_qkv, lora_config().c_attn_qkv);
  EXPECT_TRUE(same_bits(loaded.state.adamw.v, first.state.adamw.v));
  std::vector<StepReport> rest;
  TrainCallbacks cb;
  cb.on_step = [&](const StepReport& s) { rest.push_back(s); };
  EXPECT_EQ(train(w, loaded.state, periodic_data(), loaded.options, cb), TrainOutcome::completed);
  ASSERT_EQ(rest.size(), 5u);
  for (std::size_t i = 0; i < rest.size(); ++i) EXPECT_EQ(rest[i].loss, straight.reports[4 + i].loss) << i;
  EXPECT_TRUE(same_bits(loaded.state.lora.layers, straight.state.lora.layers));
  EXPECT_TRUE(same_bits(loaded.state.adamw.m, straight.state.adamw.m));
}

void expect_bad_checkpoint(const fs::path& path, const GptConfig& config, const std::string& needle) {
  try {
    load_checkpoint<double>(path, config);
    ADD_FAILURE() << "no error, wanted " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::bad_input);
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, CorruptOrMismatchedIsBadInput) {
  const auto w = model();
  const auto dir = fs::temp_directory_path() / "lorafast_test_checkpoint";
  fs::create_directories(dir);
  const auto path = dir / "c.safetensors";
  const auto state = init_train_state<double>(w.config, lora_config(), 1);
  save_checkpoint(path, Checkpoint<double>{state, options(3), w.config, {}, 0.1});
  EXPECT_NO_THROW(load_checkpoint<double>(path, w.config));

  GptConfig other = w.config;
  other.n_embd = 16;
  expect_bad_checkpoint(path, other, "written for a model with n_embd 8, this one has 16");
  try {
    load_checkpoint<float>(path, w.config);
    ADD_FAILURE() << "loaded an F64 checkpoint as F32";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("written in 'F64'"), std::string::npos) << e.what();
  }
  expect_bad_checkpoint(dir / "missing.safetensors", w.config, "missing.safetensors");

  const auto size = fs::file_size(path);
  fs::resize_file(path, size - 5);
  expect_bad_checkpoint(path, w.config, "c.safetensors");

  std::ofstream(path, std::ios::binary | std::ios::trunc) << "not a checkpoint";
  expect_bad_checkpoint(path, w.config, "c.safetensors");

  write_safetensors(path, {{"x", Tensor(DType::f64, {2})}});
  expect_bad_checkpoint(path, w.config, "not a lorafast checkpoint");
  fs::remove_all(dir);
}

// fast and chained are wired: validate() checks only --eps and --degree (whether a
// method certifies depends on the scores, known when an update plans them).
TEST(TrainOptions, AttentionFlagsAreChecked) {
  auto o = options(1);
  o.attention.method = Method::fast;
  EXPECT_NO_THROW(o.validate());
  auto expect_kind = [&](ErrorKind kind, const char* flag) {
    try {
      o.validate();
      ADD_FAILURE() << "no error for " << flag;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), kind);
      EXPECT_NE(std::string(e.what()).find(flag), std::string::npos) << e.what();
    }
  };
  o.attention.eps = 0;
  expect_kind(ErrorKind::usage, "`eps`");
  o.attention.eps = 1e-3;
  o.attention.degree = 3;
  expect_kind(ErrorKind::bad_input, "`degree`");
  o.attention.degree = 4;
  EXPECT_NO_THROW(o.validate());
}

TEST(TrainLoop, TooLittleDataIsBadInput) {
  const auto w = model();
  auto state = init_train_state<double>(w.config, lora_config(), 1);
  TrainValSplit tiny{Tokens(10, 1), Tokens(100, 1)};
  EXPECT_THROW(train(w, state, tiny, options(1)), Error);
  TrainValSplit no_val{Tokens(100, 1), Tokens(5, 1)};
  EXPECT_THROW(train(w, state, no_val, options(1)), Error);
  auto o = options(1);
  o.eval_every = 0;
  EXPECT_EQ(train(w, state, no_val, o), TrainOutcome::completed);
}

}  // namespace
}  // namespace lorafast
