// Pretraining: GPT-2's initialisation (statistics, seeding), the rank-2-only weight
// decay of the full-parameter AdamW step, the loss falling on a periodic text,
// bit-identical seeded runs, and save_gpt_model round-tripping through
// load_gpt_model. Equivalence with torch.optim.AdamW: tests/python/test_pretrain_cli.py.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "lorafast/pretrain.hpp"
#include "support/tiny_gpt.hpp"

namespace lorafast {
namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

template <class T>
bool same_bits(const GptWeights<T>& a, const GptWeights<T>& b) {
  const auto x = gpt_named_tensors(a), y = gpt_named_tensors(b);
  if (x.size() != y.size()) return false;
  for (std::size_t k = 0; k < x.size(); ++k)
    if (x[k].second->shape() != y[k].second->shape() || x[k].second->dtype() != y[k].second->dtype() ||
        std::memcmp(x[k].second->bytes(), y[k].second->bytes(), x[k].second->nbytes()) != 0)
      return false;
  return true;
}

TEST(GptInit, Gpt2StatisticsAndSeeding) {
  const GptConfig c = testing::tiny_config({3, 2, 32, 64, 48, 0});
  const auto w = init_gpt_weights<double>(c, 5);
  // Sample standard deviations of n >= 1536 N(0, s^2) values: relative standard
  // error 1 / sqrt(2n) <= 1.8%, so 10% is over 5 standard errors.
  const double residual = 0.02 / std::sqrt(6.0);
  for (const auto& [name, t] : gpt_named_tensors(w)) {
    double sum = 0, sum2 = 0;
    for (std::int64_t i = 0; i < t->numel(); ++i) {
      sum += t->at(i);
      sum2 += t->at(i) * t->at(i);
    }
    const double n = static_cast<double>(t->numel());
    if (ends_with(name, ".bias")) {
      EXPECT_EQ(sum2, 0.0) << name;
    } else if (name.find("ln_") != std::string::npos) {
      EXPECT_EQ(sum, n) << name;
      EXPECT_EQ(sum2, n) << name;
    } else {
      const double want = name.find("c_proj") != std::string::npos ? residual : 0.02;
      EXPECT_NEAR(std::sqrt(sum2 / n), want, 0.1 * want) << name;
      EXPECT_NEAR(sum / n, 0.0, 5 * want / std::sqrt(n)) << name;  // 5 standard errors of the mean
    }
  }
  EXPECT_TRUE(same_bits(w, init_gpt_weights<double>(c, 5)));
  EXPECT_FALSE(same_bits(w, init_gpt_weights<double>(c, 6)));
  // f32 is the f64 stream rounded.
  const auto f = init_gpt_weights<float>(c, 5);
  EXPECT_EQ(f.wte.at(7), static_cast<double>(static_cast<float>(w.wte.at(7))));
}

TEST(PretrainAdamW, WeightDecayOnlyOnRankTwoTensors) {
  const GptConfig c = testing::tiny_config({2, 2, 8, 11, 9, 0});
  auto state = init_pretrain_state<double>(c, 1);
  // Make every parameter non-zero so decay would show; zero gradients make the
  // Adam part exactly 0 / (0 + eps) = 0, leaving only the decay.
  for (auto& [name, t] : gpt_named_tensors(state.weights))
    for (std::int64_t i = 0; i < t->numel(); ++i) t->template data<double>()[i] = 1.0 + 0.01 * static_cast<double>(i % 7);
  const auto before = state.weights;
  AdamWOptions o;
  o.weight_decay = 0.5;
  const double lr = 0.1;
  pretrain_adamw_step(state, zero_gpt_weights<double>(c), o, lr);
  EXPECT_EQ(state.step, 1);
  const auto b = gpt_named_tensors(before);
  const auto a = gpt_named_tensors(std::as_const(state.weights));
  for (std::size_t k = 0; k < a.size(); ++k) {
    const double factor = a[k].second->shape().size() == 2 ? 1 - lr * 0.5 : 1.0;
    for (std::int64_t i = 0; i < a[k].second->numel(); ++i)
      ASSERT_EQ(a[k].second->at(i), b[k].second->at(i) * factor) << a[k].first << ' ' << i;
  }
}

TEST(AdamWUpdate, LrScaleAndDecaySwitchPerTensor) {
  Tensor p1(DType::f64, {2}), p2(DType::f64, {2}), g(DType::f64, {2});
  Tensor m1(DType::f64, {2}), v1(DType::f64, {2}), m2(DType::f64, {2}), v2(DType::f64, {2});
  for (Tensor* t : {&p1, &p2}) t->data<double>()[0] = t->data<double>()[1] = 2.0;
  g.data<double>()[0] = 3.0;
  g.data<double>()[1] = -0.5;
  AdamWOptions o;
  o.weight_decay = 0.1;
  std::int64_t step = 0;
  adamw_update<double>({{&p1, &g, &m1, &v1, 1.0, true}, {&p2, &g, &m2, &v2, 4.0, false}}, step, o, 0.01);
  EXPECT_EQ(step, 1);
  // t = 1: the update is rate * g / (|g| + eps).
  EXPECT_NEAR(p1.at(0), 2.0 * (1 - 0.01 * 0.1) - 0.01 * 3.0 / (3.0 + 1e-8), 1e-15);
  EXPECT_NEAR(p1.at(1), 2.0 * (1 - 0.01 * 0.1) + 0.01 * 0.5 / (0.5 + 1e-8), 1e-15);
  EXPECT_NEAR(p2.at(0), 2.0 - 0.04 * 3.0 / (3.0 + 1e-8), 1e-15);
  EXPECT_NEAR(p2.at(1), 2.0 + 0.04 * 0.5 / (0.5 + 1e-8), 1e-15);
}

TrainValSplit periodic_data() {
  Tokens t(800);
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<std::int32_t>((i * 3 + i / 7) % 5);
  return split_train_val(t, 0.2);
}

TrainOptions options(std::int64_t steps) {
  TrainOptions o;
  o.steps = steps;
  o.seq_len = 16;
  o.batch = 3;
  o.grad_accum = 2;
  o.lr = 1e-2;
  o.warmup = 3;
  o.adamw.weight_decay = 0.1;
  o.eval_every = 10;
  o.val_windows = 3;
  o.seed = 9;
  return o;
}

struct Run {
  std::vector<StepReport> reports;
  PretrainState<double> state;
};

Run run(const TrainOptions& o) {
  Run r{{}, init_pretrain_state<double>(testing::tiny_config({2, 2, 16, 11, 16, 0}), 3)};
  TrainCallbacks cb;
  cb.on_step = [&](const StepReport& s) { r.reports.push_back(s); };
  EXPECT_EQ(pretrain(r.state, periodic_data(), o, cb), TrainOutcome::completed);
  return r;
}

TEST(Pretrain, LossFallsOnPeriodicText) {
  const auto r = run(options(40));
  ASSERT_EQ(r.reports.size(), 40u);
  // From log(11) = 2.4 nats for a uniform guess; the text is a deterministic
  // sequence over 5 symbols, so 40 updates take well over half of it away.
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) first += r.reports[static_cast<std::size_t>(i)].loss / 5;
  for (int i = 35; i < 40; ++i) last += r.reports[static_cast<std::size_t>(i)].loss / 5;
  EXPECT_NEAR(first, std::log(11.0), 0.2);
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
  ASSERT_TRUE(r.reports[9].val_loss && r.reports[39].val_loss);
  EXPECT_LT(*r.reports[39].val_loss, *r.reports[9].val_loss);
  EXPECT_EQ(r.reports[0].tokens, 2 * 3 * 16);
  EXPECT_EQ(r.state.step, 40);
}

TEST(Pretrain, SameSeedIsBitIdenticalOtherSeedIsNot) {
  const auto a = run(options(5)), b = run(options(5));
  for (std::size_t i = 0; i < a.reports.size(); ++i) EXPECT_EQ(a.reports[i].loss, b.reports[i].loss) << i;
  EXPECT_TRUE(same_bits(a.state.weights, b.state.weights));
  EXPECT_TRUE(same_bits(a.state.v, b.state.v));
  auto o = options(5);
  o.seed = 10;
  EXPECT_NE(run(o).reports[1].loss, a.reports[1].loss);
}

TEST(Pretrain, TooLittleDataIsBadInput) {
  auto state = init_pretrain_state<double>(testing::tiny_config({1, 1, 4, 11, 16, 0}), 1);
  EXPECT_THROW(pretrain(state, TrainValSplit{Tokens(10, 1), Tokens(100, 1)}, options(1)), Error);
  auto o = options(1);
  o.seq_len = 17;  // > n_positions
  EXPECT_THROW(pretrain(state, periodic_data(), o), Error);
}

template <class T>
void round_trip(const char* name) {
  const GptConfig c = testing::tiny_config({2, 2, 8, 256, 12, 0});
  const auto w = init_gpt_weights<T>(c, 11);
  const fs::path dir = fs::temp_directory_path() / name / "nested";
  fs::remove_all(dir.parent_path());
  save_gpt_model(dir, w);
  const auto loaded = load_gpt_model<T>(dir);
  EXPECT_TRUE(same_bits(w, loaded));
  EXPECT_EQ(loaded.config.n_positions, 12);
  const auto tensors = read_safetensors(dir / "model.safetensors");
  EXPECT_EQ(tensors.tensors.count("transformer.h.1.mlp.c_proj.weight"), 1u);
  EXPECT_EQ(tensors.tensors.at("transformer.wte.weight").dtype(), dtype_of<T>());
  EXPECT_EQ(tensors.metadata.at("format"), "pt");
  std::ifstream in(dir / "config.json");
  const auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j.at("model_type"), "gpt2");
  EXPECT_EQ(j.at("activation_function"), "gelu_new");
  EXPECT_EQ(j.at("n_layer"), 2);
  EXPECT_EQ(j.at("vocab_size"), 256);
  EXPECT_EQ(j.at("layer_norm_epsilon"), 1e-5);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 2);  // no temporary left
  fs::remove_all(dir.parent_path());
}

TEST(SaveGptModel, RoundTripsF32AndF64) {
  round_trip<float>("lorafast_test_save_f32");
  round_trip<double>("lorafast_test_save_f64");
}

TEST(SaveGptModel, UnwritableDirectoryIsBadInput) {
  const auto w = init_gpt_weights<float>(testing::tiny_config({1, 1, 4, 11, 4, 0}), 1);
  const fs::path file = fs::temp_directory_path() / "lorafast_test_save_file";
  std::ofstream(file) << "x";
  try {
    save_gpt_model(file / "model", w);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::bad_input);
    EXPECT_NE(std::string(e.what()).find("lorafast_test_save_file"), std::string::npos) << e.what();
  }
  fs::remove(file);
}

}  // namespace
}  // namespace lorafast
