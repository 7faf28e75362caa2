// PEFT adapter directories: round trip, the JSON PEFT expects, atomic writes, and
// corrupt or mismatched adapters rejected with Error(bad_input) naming the file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "lorafast/atomic_file.hpp"
#include "support/bad_input.hpp"
#include "support/tiny_gpt.hpp"

namespace lorafast {
namespace {

namespace fs = std::filesystem;
using testing::random_lora;
using testing::tiny_config;
using testing::TinyGptSpec;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / cat("lorafast-peft-", name, '-', ::getpid());
  fs::remove_all(dir);
  return dir;
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

LoraConfig config_for(const std::string& qkv, std::vector<LoraTarget> targets) {
  LoraConfig c;
  c.rank = 3;
  c.alpha = 6.0;
  c.rslora = true;
  c.targets = std::move(targets);
  c.c_attn_qkv = parse_qkv_subset(qkv);
  c.base_model = "tiny-gpt";
  return c;
}

std::string load_error(const fs::path& dir, const GptConfig& model) {
  return testing::bad_input_message([&] { load_peft_adapter<double>(dir, model); });
}

TEST(PeftAdapter, RoundTripsExactly) {
  const GptConfig model = tiny_config(TinyGptSpec{});
  const auto lora = random_lora<double>(
      model, config_for("qv", {LoraTarget::mlp_c_proj, LoraTarget::attn_c_attn, LoraTarget::mlp_c_fc}), 5);
  const fs::path dir = fresh_dir("roundtrip") / "nested";
  save_peft_adapter(dir, lora);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 2);  // no temporaries left
  const auto back = load_peft_adapter<double>(dir, model);
  EXPECT_EQ(back.config.rank, 3);
  EXPECT_EQ(back.config.alpha, 6.0);
  EXPECT_TRUE(back.config.rslora);
  EXPECT_EQ(back.config.targets, lora.config.targets);
  EXPECT_EQ(back.config.c_attn_qkv, (std::array<bool, 3>{true, false, true}));
  EXPECT_EQ(back.config.base_model, "tiny-gpt");
  for (std::int64_t i = 0; i < model.n_layer; ++i)
    for (auto t : all_lora_targets) {
      ASSERT_EQ(back.at(i, t).has_value(), lora.at(i, t).has_value());
      if (!lora.at(i, t)) continue;
      for (std::int64_t j = 0; j < lora.at(i, t)->a.numel(); ++j) ASSERT_EQ(back.at(i, t)->a.at(j), lora.at(i, t)->a.at(j));
      for (std::int64_t j = 0; j < lora.at(i, t)->b.numel(); ++j) ASSERT_EQ(back.at(i, t)->b.at(j), lora.at(i, t)->b.at(j));
    }
  fs::remove_all(dir.parent_path());
}

TEST(PeftAdapter, WritesWhatPeftReads) {
  const GptConfig model = tiny_config(TinyGptSpec{});
  const auto lora = init_gpt_lora<float>(model, config_for("qkv", {LoraTarget::attn_c_attn, LoraTarget::attn_c_proj}), 1);
  const fs::path dir = fresh_dir("json");
  save_peft_adapter(dir, lora);
  const auto j = nlohmann::json::parse(slurp(dir / "adapter_config.json"));
  EXPECT_EQ(j.at("peft_type"), "LORA");
  EXPECT_EQ(j.at("task_type"), "CAUSAL_LM");
  EXPECT_EQ(j.at("r"), 3);
  EXPECT_EQ(j.at("lora_alpha"), 6.0);
  EXPECT_EQ(j.at("target_modules"), nlohmann::json({"attn.c_attn", "attn.c_proj"}));
  EXPECT_EQ(j.at("fan_in_fan_out"), true);
  EXPECT_EQ(j.at("use_rslora"), true);
  EXPECT_EQ(j.at("bias"), "none");
  EXPECT_EQ(j.at("base_model_name_or_path"), "tiny-gpt");
  const auto file = read_safetensors(dir / "adapter_model.safetensors");
  EXPECT_EQ(file.tensors.size(), 8u);
  const Tensor& b = file.tensors.at("base_model.model.transformer.h.1.attn.c_attn.lora_B.weight");
  EXPECT_EQ(b.shape(), Shape({24, 3}));
  EXPECT_EQ(b.dtype(), DType::f32);
  EXPECT_EQ(file.tensors.at("base_model.model.transformer.h.0.attn.c_proj.lora_A.weight").shape(), Shape({3, 8}));
  EXPECT_EQ(file.metadata.at("format"), "pt");
  fs::remove_all(dir);
}

// PEFT's short names: "c_attn", "c_fc", and "c_proj", which PEFT matches in both
// attn and mlp. Tensors may be stored in another precision.
TEST(PeftAdapter, AcceptsPeftShortNamesAndOtherPrecisions) {
  const GptConfig model = tiny_config(TinyGptSpec{});
  const auto lora = random_lora<double>(model, config_for("qkv", std::vector<LoraTarget>(all_lora_targets.begin(), all_lora_targets.end())), 2);
  const fs::path dir = fresh_dir("short");
  save_peft_adapter(dir, lora);
  auto j = nlohmann::json::parse(slurp(dir / "adapter_config.json"));
  j["target_modules"] = {"c_attn", "c_proj", "c_fc"};
  write_file_atomically(dir / "adapter_config.json", j.dump());
  auto file = read_safetensors(dir / "adapter_model.safetensors");
  for (auto& [name, t] : file.tensors) t = t.to(DType::f32);
  write_safetensors(dir / "adapter_model.safetensors", file.tensors);  // no metadata: q, k, v all adapted
  const auto back = load_peft_adapter<float>(dir, model);
  EXPECT_EQ(back.config.targets.size(), 4u);
  EXPECT_EQ(back.config.c_attn_qkv, (std::array<bool, 3>{true, true, true}));
  EXPECT_EQ(back.at(1, LoraTarget::mlp_c_proj)->a.at(0), static_cast<float>(lora.at(1, LoraTarget::mlp_c_proj)->a.at(0)));
  fs::remove_all(dir);
}

struct Corruption {
  std::string name;
  std::function<void(nlohmann::json& config, SafetensorsContents& file)> apply;
  std::string needle;
};

TEST(PeftAdapter, CorruptOrMismatchedAdaptersAreRejected) {
  const GptConfig model = tiny_config(TinyGptSpec{});
  const auto lora = random_lora<double>(model, config_for("qv", {LoraTarget::attn_c_attn, LoraTarget::mlp_c_fc}), 3);
  const std::string a0 = peft_tensor_name(0, LoraTarget::attn_c_attn, false);
  const std::string b1 = peft_tensor_name(1, LoraTarget::attn_c_attn, true);
  const std::vector<Corruption> cases = {
      {"peft_type", [](auto& j, auto&) { j["peft_type"] = "IA3"; }, "'peft_type' must be \"LORA\""},
      {"rank", [](auto& j, auto&) { j["r"] = 4; }, "lora_A has shape [3, 8], expected [4, 8]"},
      {"rank0", [](auto& j, auto&) { j["r"] = 0; }, "'r' must be an integer"},
      {"target", [](auto& j, auto&) { j["target_modules"] = {"q_proj"}; }, "target module 'q_proj' is not supported"},
      {"bias", [](auto& j, auto&) { j["bias"] = "all"; }, "'bias' 'all' is not supported"},
      {"dora", [](auto& j, auto&) { j["use_dora"] = true; }, "'use_dora' true is not supported"},
      {"rank_pattern", [](auto& j, auto&) { j["rank_pattern"] = {{"h.0.attn.c_attn", 2}}; }, "'rank_pattern'"},
      {"missing", [&](auto&, auto& f) { f.tensors.erase(a0); }, "missing tensor '" + a0 + "'"},
      {"extra", [](auto&, auto& f) { f.tensors["base_model.model.transformer.h.2.mlp.c_fc.lora_A.weight"] = Tensor(DType::f32, {3, 8}); },
       "unexpected tensor 'base_model.model.transformer.h.2.mlp.c_fc.lora_A.weight'"},
      {"untargeted", [](auto& j, auto&) { j["target_modules"] = {"attn.c_attn"}; }, "unexpected tensor"},
      {"shape", [&](auto&, auto& f) { f.tensors[b1] = Tensor(DType::f64, {8, 3}); }, "lora_B has shape [8, 3], expected [24, 3]"},
      {"nan", [&](auto&, auto& f) { f.tensors.at(a0).template data<double>()[2] = std::nan(""); }, "NaN or Inf"},
      {"frozen rows", [&](auto&, auto& f) { f.tensors.at(b1).template data<double>()[8 * 3 + 1] = 0.5; },
       "the k rows of lora_B must be zero"},
      {"qkv metadata", [](auto&, auto& f) { f.metadata["lorafast.c_attn_qkv"] = "qx"; }, "metadata 'lorafast.c_attn_qkv'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path dir = fresh_dir("corrupt");
    save_peft_adapter(dir, lora);
    auto j = nlohmann::json::parse(slurp(dir / "adapter_config.json"));
    auto file = read_safetensors(dir / "adapter_model.safetensors");
    c.apply(j, file);
    write_file_atomically(dir / "adapter_config.json", j.dump());
    write_safetensors(dir / "adapter_model.safetensors", file.tensors, file.metadata);
    const std::string message = load_error(dir, model);
    EXPECT_MENTIONS(message, dir.string());
    EXPECT_MENTIONS(message, c.needle);
    fs::remove_all(dir);
  }
}

TEST(PeftAdapter, MissingFilesAndOtherModelsAreRejected) {
  const GptConfig model = tiny_config(TinyGptSpec{});
  const fs::path dir = fresh_dir("missing");
  EXPECT_MENTIONS(load_error(dir, model), "adapter_config.json: cannot open: no such file");
  save_peft_adapter(dir, init_gpt_lora<double>(model, config_for("qkv", {LoraTarget::attn_c_attn}), 1));
  fs::remove(dir / "adapter_model.safetensors");
  EXPECT_MENTIONS(load_error(dir, model), "adapter_model.safetensors: cannot open");
  save_peft_adapter(dir, init_gpt_lora<double>(model, config_for("qkv", {LoraTarget::attn_c_attn}), 1));
  GptConfig wider = model;
  wider.n_embd = 12;
  EXPECT_MENTIONS(load_error(dir, wider), "expected [3, 12]");
  GptConfig deeper = model;
  deeper.n_layer = 3;
  EXPECT_MENTIONS(load_error(dir, deeper), "missing tensor 'base_model.model.transformer.h.2.attn.c_attn.lora_A.weight'");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace lorafast
