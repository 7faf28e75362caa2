// Hostile files, round two: every reader caps JSON nesting, checks each number's kind
// and range before converting it, keeps messages on one bounded line, and allocates
// no more than its input holds. Each case here failed (crash, UB, wrong error, a
// multi-line message or a huge allocation) before these rules.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include "core/json_read.hpp"
#include "lorafast/cost_model.hpp"
#include "lorafast/gpt.hpp"
#include "lorafast/gpt_lora.hpp"
#include "lorafast/safetensors.hpp"
#include "lorafast/train_checkpoint.hpp"
#include "lorafast/train_data.hpp"
#include "support/bad_input.hpp"
#include "support/tiny_gpt.hpp"

namespace lorafast {
namespace {

using testing::bad_input_message;

bool one_safe_line(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  return s.size() <= max_message_bytes + 3;
}

std::string deep(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

std::vector<std::byte> safetensors_file(const std::string& header, const std::string& data = "") {
  std::vector<std::byte> file(8 + header.size() + data.size());
  for (int i = 0; i < 8; ++i) file[i] = static_cast<std::byte>((header.size() >> (8 * i)) & 0xff);
  std::memcpy(file.data() + 8, header.data(), header.size());
  std::memcpy(file.data() + 8 + header.size(), data.data(), data.size());
  return file;
}

TEST(OneLine, EscapesControlsAndInvalidUtf8AndKeepsUtf8) {
  EXPECT_EQ(one_line("a\nb\x1b[31m\x7f"), "a\\x0ab\\x1b[31m\\x7f");
  EXPECT_EQ(one_line("caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80"), "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80");
  EXPECT_EQ(one_line("\xc2\x9b"), "\\xc2\\x9b");          // C1 CSI, which terminals obey
  EXPECT_EQ(one_line("\xff\xc3"), "\\xff\\xc3");          // invalid, truncated sequence
  EXPECT_EQ(one_line("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a UTF-16 surrogate
  EXPECT_EQ(one_line("\xc0\xaf"), "\\xc0\\xaf");          // overlong
  EXPECT_EQ(one_line(std::string(50, 'x'), 10), std::string(10, 'x') + "...");
  EXPECT_EQ(quote("x\ny"), "'x\\x0ay'");
  EXPECT_TRUE(one_safe_line(Error(ErrorKind::bad_input, std::string(100000, '\n')).what()));
}

TEST(ParseJson, CapsDepthRejectsDuplicatesAndNamesTheFile) {
  EXPECT_NO_THROW(parse_json(deep(max_json_depth), "f.json"));
  for (const std::string& text : {deep(max_json_depth + 1), deep(100000), std::string("{\"a\":1,\"a\":2}"),
                                  std::string("{\"x\":{\"b\":1,\"b\":1}}"), std::string("[1e400]"),
                                  std::string("{\"a\":") + std::string(100000, '"')}) {
    const std::string m = bad_input_message([&] { parse_json(text, "f.json"); });
    EXPECT_EQ(m.rfind("f.json: ", 0), 0u) << m;
    EXPECT_TRUE(one_safe_line(m)) << m;
  }
}

TEST(JsonRead, IntegersAreCheckedBeforeConversion) {
  using nlohmann::json;
  EXPECT_EQ(json_integer(json::parse("7"), 0, 9, "k"), 7);
  EXPECT_EQ(json_integer(json::parse("-3"), -5, 9, "k"), -3);
  for (const char* text : {"1e300", "1e19", "7.5", "18446744073709551615", "-9223372036854775808", "10", "\"7\"",
                           "true", "null", "[7]"})
    EXPECT_MENTIONS(bad_input_message([&] { json_integer(json::parse(text), -5, 9, "f: 'k'"); }), "f: 'k' must be");
  EXPECT_MENTIONS(bad_input_message([&] { json_number(json::parse("[[1]]"), "f: 'x'"); }), "got an array");
  EXPECT_MENTIONS(bad_input_message([&] { json_unsigned(json::parse("-1"), "f: 'x'"); }), "non-negative integer");
}

TEST(HostileSafetensors, NumberOverflowIsBadInputNamingTheFile) {
  EXPECT_MENTIONS(bad_input_message([] { parse_safetensors(safetensors_file("{\"a\":1e400}"), "h.safetensors"); }),
                  "h.safetensors: header is not valid JSON");
}

TEST(HostileSafetensors, ShapesAreCheckedAsTheyAreRead) {
  const auto error = [](const std::string& header) {
    return bad_input_message([&] { parse_safetensors(safetensors_file(header), "h.safetensors"); });
  };
  EXPECT_MENTIONS(error("{\"x\":[[],[],[]]}"), "tensor 'x': entry is a list, not an object");
  EXPECT_MENTIONS(error("{\"x\":1}"), "tensor 'x': entry is a number, not an object");
  EXPECT_MENTIONS(error("[1]"), "header is a JSON array");
  EXPECT_MENTIONS(error("{\"x\":{\"dtype\":\"F32\",\"shape\":[[1]],\"data_offsets\":[0,4]}}"), "a value is a list");
  std::string rank65 = "1";
  for (int i = 1; i < 65; ++i) rank65 += ",1";
  EXPECT_MENTIONS(error("{\"x\":{\"dtype\":\"F32\",\"shape\":[" + rank65 + "],\"data_offsets\":[0,4]}}"),
                  "a list longer than 64");
  EXPECT_MENTIONS(error("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}"), "__metadata__: duplicate key 'a'");
  EXPECT_MENTIONS(error("{\"__metadata__\":{\"a\":" + deep(100000) + "}}"), "h.safetensors");
  EXPECT_MENTIONS(error("{\"x\":{\"dtype\":\"F32\",\"extra\":" + deep(100000) + "}}"), "nested deeper");
  EXPECT_MENTIONS(error("{\"x\\n\\u001b[31m\":1}"), "tensor 'x\\x0a\\x1b[31m': entry is a number");
}

TEST(HostileSafetensors, UnknownEntryFieldsAreIgnoredEvenWhenNested) {
  const auto contents = parse_safetensors(
      safetensors_file("{\"x\":{\"dtype\":\"F32\",\"note\":{\"a\":[1,[2]]},\"shape\":[1],\"data_offsets\":[0,4]}}",
                       "\x01\x02\x03\x04"),
      "h.safetensors");
  ASSERT_EQ(contents.tensors.size(), 1u);
  EXPECT_EQ(contents.tensors.at("x").shape(), Shape{1});
}

TEST(HostileConfig, DeepValuesAreBadInputOnOneLine) {
  const std::string sizes = "\"n_layer\":1,\"n_head\":1,\"n_embd\":4,\"n_positions\":4,\"vocab_size\":4,";
  for (const std::string field : {"n_inner", "activation_function", "layer_norm_epsilon", "scale_attn_weights"}) {
    const std::string text = "{" + sizes + (field == "layer_norm_epsilon" ? "" : "\"layer_norm_epsilon\":1e-5,") +
                             "\"" + field + "\":" + deep(100000) + "}";
    const std::string m = bad_input_message([&] { parse_gpt_config(text, "config.json"); });
    EXPECT_EQ(m.rfind("config.json: ", 0), 0u) << m;
  }
  const std::string shallow = "{" + sizes + "\"layer_norm_epsilon\":1e-5,\"n_inner\":" + deep(60) + "}";
  const std::string m = bad_input_message([&] { parse_gpt_config(shallow, "config.json"); });
  EXPECT_MENTIONS(m, "'n_inner' an array is not supported");
}

TEST(HostileConfig, ModelLargerThanItsWeightsFileAllocatesNothing) {
  GptConfig huge;
  huge.n_layer = 4096, huge.n_head = 1, huge.n_embd = 1 << 16, huge.n_positions = 1 << 24, huge.vocab_size = 256;
  EXPECT_MENTIONS(bad_input_message([&] { gpt_weights_from_tensors<float>(huge, {}, "model.safetensors"); }),
                  "model.safetensors: missing tensor 'wte.weight'");
  // Every tensor but the last block's is present: still nothing allocated for the model.
  testing::TinyGptSpec spec;
  GptConfig config = testing::tiny_config(spec);
  TensorMap tensors = testing::tiny_model_tensors(spec, false);
  tensors.erase("h.1.mlp.c_proj.bias");
  EXPECT_MENTIONS(bad_input_message([&] { gpt_weights_from_tensors<float>(config, tensors, "m.safetensors"); }),
                  "missing tensor 'h.1.mlp.c_proj.bias'");
}

TEST(HostileConfig, BlockIndexBeyond64BitsIsAnExtraBlock) {
  testing::TinyGptSpec spec;
  TensorMap tensors = testing::tiny_model_tensors(spec, false);
  tensors["h.99999999999999999999.ln_1.weight"] = tensors.at("h.0.ln_1.weight");
  EXPECT_MENTIONS(bad_input_message([&] { gpt_weights_from_tensors<float>(testing::tiny_config(spec), tensors, "m"); }),
                  "'h.99999999999999999999.ln_1.weight' belongs to a block beyond");
}

TEST(HostileAdapterConfig, DeepOrHostileValuesAreBadInputOnOneLine) {
  const std::string base = "{\"peft_type\":\"LORA\",\"r\":2,\"target_modules\":";
  for (const std::string& text : {base + "[\"c_attn\"],\"rank_pattern\":{\"a\":" + deep(100000) + "}}",
                                  base + "[" + deep(100000) + "]}", base + "[[[1]]]}",
                                  base + "[\"x\\n\\u001b[31mlorafast: error: fake\"]}",
                                  base + "[\"c_attn\"],\"r\":3}"}) {
    const std::string m = bad_input_message([&] { parse_peft_adapter_config(text, "adapter_config.json"); });
    EXPECT_EQ(m.rfind("adapter_config.json: ", 0), 0u) << m;
    EXPECT_TRUE(one_safe_line(m)) << m;
  }
}

TEST(HostileCostModel, ThreadsMustBeASmallInteger) {
  std::string fields;
  for (const char* k : {"exact_quadratic", "exact_scores", "exact_fixed", "fast_state", "fast_map", "fast_chunk",
                        "fast_fixed", "chained_factor"})
    fields += cat('"', k, "\":1e-9,");
  EXPECT_EQ(parse_cost_model("{" + fields + "\"threads\":2}", "c.json").threads, 2);
  for (const char* threads : {"1e300", "2.5", "-1", "[[2]]"})
    EXPECT_MENTIONS(bad_input_message([&] { parse_cost_model("{" + fields + "\"threads\":" + threads + "}", "c.json"); }),
                    "cost model c.json: 'threads' must be an integer");
}

TEST(HostileTokenData, IdsAreCheckedWithTheFileNamed) {
  const std::string two_ids("\x01\x00\xff\xff", 4);
  EXPECT_EQ(parse_token_ids(two_ids.substr(0, 2), DataFormat::uint16, 300, "d.bin"), Tokens{1});
  EXPECT_MENTIONS(bad_input_message([&] { parse_token_ids(two_ids, DataFormat::uint16, 300, "d.bin"); }),
                  "d.bin: token 1 is 65535");
  EXPECT_MENTIONS(bad_input_message([&] { parse_token_ids(two_ids.substr(0, 3), DataFormat::int32, 300, "d.bin"); }),
                  "d.bin: 3 bytes");
  EXPECT_MENTIONS(bad_input_message([&] { parse_token_ids("", DataFormat::bytes, 256, "d.bin"); }), "d.bin");
}

// A valid checkpoint's contents with its metadata JSON edited by `edit`.
SafetensorsContents edited_checkpoint(const GptConfig& model, const std::function<void(nlohmann::json&)>& edit) {
  LoraConfig lora;
  lora.rank = 2;
  const auto path = std::filesystem::temp_directory_path() / cat("lorafast-hostile-", ::getpid(), ".safetensors");
  save_checkpoint(path, Checkpoint<float>{init_train_state<float>(model, lora, 1), TrainOptions{}, model, {}, 0.1});
  auto contents = read_safetensors(path);
  std::filesystem::remove(path);
  auto meta = nlohmann::json::parse(contents.metadata.at("lorafast.checkpoint"));
  edit(meta);
  contents.metadata["lorafast.checkpoint"] = meta.dump();
  return contents;
}

TEST(HostileCheckpoint, FieldsAreCheckedForKindAndRangeAndBlameTheFile) {
  using nlohmann::json;
  const GptConfig model = testing::tiny_config({});
  EXPECT_NO_THROW(checkpoint_from_contents<float>(edited_checkpoint(model, [](json&) {}), model, "c.st"));
  const std::vector<std::pair<std::function<void(json&)>, std::string>> cases = {
      {[](json& m) { m["options"]["steps"] = 1e300; }, "c.st: checkpoint: option 'steps' must be an integer"},
      {[](json& m) { m["options"]["seq_len"] = 1e19; }, "option 'seq_len' must be an integer"},
      {[](json& m) { m["step"] = 1e300; }, "'step' must be an integer"},
      {[](json& m) { m["options"]["seed"] = -1; }, "option 'seed' must be a non-negative integer"},
      {[](json& m) { m["val_fraction"] = 5; }, "c.st: checkpoint: 'val_fraction' must be in [0, 1), got 5"},
      {[](json& m) { m["options"]["method"] = "x\n\x1b[31m"; }, "option 'method' 'x\\x0a\\x1b[31m' is not"},
      {[](json& m) { m["lora"]["targets"] = json::array({"x\ny"}); }, "unknown LoRA target 'x\\x0ay'"},
      {[](json& m) { m["model"]["n_embd"] = json::array({json::array({1})}); }, "n_embd an array"},
      {[](json& m) { m["format"] = json::object({{"a", 1}}); }, "format an object is not 1"},
      {[](json& m) { m.erase("data"); }, "missing 'data'"},
  };
  for (const auto& [edit, needle] : cases) {
    const std::string m =
        bad_input_message([&] { checkpoint_from_contents<float>(edited_checkpoint(model, edit), model, "c.st"); });
    EXPECT_MENTIONS(m, needle);
    EXPECT_TRUE(one_safe_line(m)) << m;
  }
}

TEST(HostileCheckpoint, InvalidUtf8InAPathIsReplacedNotFatal) {
  const GptConfig model = testing::tiny_config({});
  LoraConfig lora;
  lora.base_model = "models/\xff\xfe";
  const auto dir = std::filesystem::temp_directory_path() / cat("lorafast-utf8-", ::getpid());
  auto state = init_train_state<float>(model, lora, 1);
  save_peft_adapter(dir, state.lora);
  save_checkpoint(dir / "c.safetensors", Checkpoint<float>{state, TrainOptions{}, model, {}, 0.1});
  EXPECT_EQ(load_peft_adapter<float>(dir, model).config.base_model, "models/\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(load_checkpoint<float>(dir / "c.safetensors", model).state.lora.config.base_model,
            "models/\xef\xbf\xbd\xef\xbf\xbd");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace lorafast
