// GPT-2 model directories: config.json parsing and validation, weight loading with
// or without the "transformer." prefix, and every kind of mismatch reported as
// Error(bad_input) naming the file and the tensor or key.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <fstream>

#include "lorafast/atomic_file.hpp"
#include "support/bad_input.hpp"
#include "support/tiny_gpt.hpp"

namespace lorafast {
namespace {

namespace fs = std::filesystem;
using testing::tiny_config;
using testing::tiny_model_tensors;
using testing::TinyGptSpec;

const std::string good_config =
    R"({"n_layer": 2, "n_head": 2, "n_embd": 8, "n_positions": 9, "vocab_size": 11,
        "layer_norm_epsilon": 1e-05, "activation_function": "gelu_new", "model_type": "gpt2"})";

using testing::bad_input_message;

TEST(GptConfig, ParsesTheHuggingFaceKeys) {
  const GptConfig c = parse_gpt_config(good_config, "config.json");
  EXPECT_EQ(c.n_layer, 2);
  EXPECT_EQ(c.n_head, 2);
  EXPECT_EQ(c.n_embd, 8);
  EXPECT_EQ(c.n_positions, 9);
  EXPECT_EQ(c.vocab_size, 11);
  EXPECT_EQ(c.layer_norm_epsilon, 1e-5);
  EXPECT_EQ(c.head_dim(), 4);
}

TEST(GptConfig, RejectsBadValues) {
  auto with = [](const std::string& key, const std::string& value) {
    auto j = std::string(good_config);
    const auto pos = j.find("\"" + key + "\"");
    if (pos == std::string::npos) return j.substr(0, j.size() - 1) + ", \"" + key + "\": " + value + "}";
    const auto colon = j.find(':', pos), end = j.find_first_of(",}", colon);
    return j.substr(0, colon + 1) + " " + value + j.substr(end);
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {with("n_head", "3"), "does not divide"},
      {with("n_embd", "0"), "'n_embd' must be in"},
      {with("n_layer", "-2"), "'n_layer' must be an integer in [0, "},
      {with("vocab_size", "11.5"), "'vocab_size' must be an integer"},
      {with("n_positions", "\"9\""), "'n_positions' must be an integer"},
      {with("layer_norm_epsilon", "0"), "'layer_norm_epsilon' must be positive"},
      {with("activation_function", "\"relu\""), "'activation_function'"},
      {with("scale_attn_by_inverse_layer_idx", "true"), "scale_attn_by_inverse_layer_idx"},
      {with("n_inner", "7"), "'n_inner'"},
      {R"({"n_layer": 2})", "missing 'n_head'"},
      {"[1, 2]", "not a JSON object"},
      {"{\"n_layer\": ", "not valid JSON"},
  };
  for (const auto& [text, needle] : cases) {
    const std::string message = bad_input_message([&] { parse_gpt_config(text, "cfg.json"); });
    EXPECT_MENTIONS(message, "cfg.json");
    EXPECT_MENTIONS(message, needle);
  }
  EXPECT_NO_THROW(parse_gpt_config(with("n_inner", "null"), "cfg.json"));
}

TEST(GptWeights, PrefixIsOptionalAndExtrasAreIgnored) {
  const TinyGptSpec spec;
  const GptConfig config = tiny_config(spec);
  TensorMap bare = tiny_model_tensors(spec, false);
  TensorMap prefixed = tiny_model_tensors(spec, true);
  bare["lm_head.weight"] = bare.at("wte.weight");
  prefixed["transformer.h.0.attn.bias"] = Tensor(DType::f32, {1, 1, 9, 9});
  prefixed["transformer.h.1.attn.masked_bias"] = Tensor(DType::f32, {});
  const auto a = gpt_weights_from_tensors<double>(config, bare, "bare");
  const auto b = gpt_weights_from_tensors<double>(config, prefixed, "prefixed");
  ASSERT_EQ(a.blocks.size(), 2u);
  for (std::int64_t i = 0; i < a.wte.numel(); ++i) ASSERT_EQ(a.wte.at(i), b.wte.at(i));
  const Tensor& w = a.blocks[1].mlp_c_proj_weight;
  EXPECT_EQ(w.shape(), Shape({32, 8}));
  EXPECT_EQ(w.at(5), bare.at("h.1.mlp.c_proj.weight").at(5));
  EXPECT_EQ(w.at(5), b.blocks[1].mlp_c_proj_weight.at(5));
}

TEST(GptWeights, ConvertsStoredPrecision) {
  const TinyGptSpec spec;
  TensorMap tensors = tiny_model_tensors(spec, true);
  for (auto& [name, t] : tensors) t = t.to(DType::f32);
  const auto w = gpt_weights_from_tensors<double>(tiny_config(spec), tensors, "f32 file");
  EXPECT_EQ(w.ln_f_bias.dtype(), DType::f64);
  EXPECT_EQ(w.ln_f_bias.at(3), tensors.at("transformer.ln_f.bias").at(3));
}

TEST(GptWeights, MismatchesNameTheTensor) {
  const TinyGptSpec spec;
  const GptConfig config = tiny_config(spec);
  auto load = [&](const TensorMap& t) { gpt_weights_from_tensors<float>(config, t, "model.safetensors"); };

  TensorMap t = tiny_model_tensors(spec, true);
  t.erase("transformer.h.1.ln_2.bias");
  std::string m = bad_input_message([&] { load(t); });
  EXPECT_MENTIONS(m, "model.safetensors");
  EXPECT_MENTIONS(m, "missing tensor 'transformer.h.1.ln_2.bias'");

  t = tiny_model_tensors(spec, false);
  t["h.0.attn.c_attn.weight"] = Tensor(DType::f64, {24, 8});  // nn.Linear layout, not Conv1D
  m = bad_input_message([&] { load(t); });
  EXPECT_MENTIONS(m, "'h.0.attn.c_attn.weight' has shape [24, 8], the config implies [8, 24]");

  t = tiny_model_tensors(spec, false);
  t["h.2.ln_1.weight"] = Tensor(DType::f64, {8});
  m = bad_input_message([&] { load(t); });
  EXPECT_MENTIONS(m, "'h.2.ln_1.weight' belongs to a block beyond the config's n_layer 2");

  t = tiny_model_tensors(spec, true);
  t.at("transformer.wpe.weight").data<double>()[4] = std::nan("");
  m = bad_input_message([&] { load(t); });
  EXPECT_MENTIONS(m, "'transformer.wpe.weight' has NaN or Inf");

  GptConfig wider = config;
  wider.vocab_size = 12;
  m = bad_input_message([&] { gpt_weights_from_tensors<float>(wider, tiny_model_tensors(spec, true), "m"); });
  EXPECT_MENTIONS(m, "'transformer.wte.weight' has shape [11, 8], the config implies [12, 8]");
}

TEST(GptWeights, LoadsAModelDirectory) {
  const fs::path dir = fs::temp_directory_path() / cat("lorafast-gpt-model-", ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::string m = bad_input_message([&] { load_gpt_model<float>(dir); });
  EXPECT_MENTIONS(m, (dir / "config.json").string());
  write_file_atomically(dir / "config.json", good_config);
  m = bad_input_message([&] { load_gpt_model<float>(dir); });
  EXPECT_MENTIONS(m, (dir / "model.safetensors").string());
  write_safetensors(dir / "model.safetensors", tiny_model_tensors(TinyGptSpec{}, true));
  const auto w = load_gpt_model<float>(dir);
  EXPECT_EQ(w.config.n_layer, 2);
  EXPECT_EQ(w.wte.dtype(), DType::f32);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace lorafast
