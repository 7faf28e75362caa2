// PEFT adapter directories (INTERFACE.md): adapter_config.json and
// adapter_model.safetensors with base_model.model.transformer.h.{i}.<module>.lora_{A,B}.weight.
// Which of q, k, v an attn.c_attn adapter updates is not a PEFT notion; it is kept
// in the safetensors metadata ("lorafast.c_attn_qkv"), which PEFT ignores, and
// checked on load against the rows of lora_B that must be zero.
#include <set>

#include <nlohmann/json.hpp>

#include "io/text_file.hpp"
#include "lorafast/atomic_file.hpp"
#include "lorafast/gpt_lora.hpp"

namespace lorafast {
namespace {

using nlohmann::json;
constexpr auto bad = ErrorKind::bad_input;
constexpr std::uint64_t max_config_bytes = 10'000'000;
constexpr const char* qkv_metadata_key = "lorafast.c_attn_qkv";
const std::string peft_prefix = "base_model.model.transformer.";
const std::string peft_prefix_bare = "base_model.model.";  // a PEFT model wrapping GPT2Model itself

std::string tensor_suffix(std::int64_t layer, LoraTarget target, bool is_b) {
  return cat("h.", layer, '.', lora_target_name(target), is_b ? ".lora_B.weight" : ".lora_A.weight");
}

json config_json(const LoraConfig& c) {
  json targets = json::array();
  for (auto t : c.targets) targets.push_back(lora_target_name(t));
  return {{"peft_type", "LORA"},
          {"task_type", "CAUSAL_LM"},
          {"r", c.rank},
          {"lora_alpha", c.alpha},
          {"target_modules", targets},
          {"fan_in_fan_out", true},
          {"use_rslora", c.rslora},
          {"bias", "none"},
          {"lora_dropout", 0.0},
          {"base_model_name_or_path", c.base_model.empty() ? json(nullptr) : json(c.base_model)},
          {"inference_mode", true},
          {"modules_to_save", nullptr},
          {"layers_to_transform", nullptr},
          {"rank_pattern", json::object()},
          {"alpha_pattern", json::object()}};  // no "use_dora": PEFT before 0.9 rejects unknown keys
}

// A field that, when present, must have a value meaning "feature not used".
void check_unused(const json& j, const char* key, bool unused, const std::string& origin) {
  LF_CHECK(!j.contains(key) || unused, bad, origin, ": '", key, "' ", j.contains(key) ? j.at(key).dump() : "",
           " is not supported");
}

bool null_or_empty(const json& j, const char* key) {
  return !j.contains(key) || j.at(key).is_null() || (j.at(key).is_structured() && j.at(key).empty());
}

void add_targets(const json& entry, std::vector<LoraTarget>& targets, const std::string& origin) {
  LF_CHECK(entry.is_string(), bad, origin, ": 'target_modules' entries must be strings, got ", entry.dump());
  const auto name = entry.get<std::string>();
  std::vector<LoraTarget> found;
  if (name == "c_proj") found = {LoraTarget::attn_c_proj, LoraTarget::mlp_c_proj};  // PEFT matches both
  else if (auto t = parse_lora_target(name)) found = {*t};
  LF_CHECK(!found.empty(), bad, origin, ": target module '", name,
           "' is not supported (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj)");
  for (auto t : found)
    if (std::find(targets.begin(), targets.end(), t) == targets.end()) targets.push_back(t);
}

LoraConfig parse_config(const std::string& text, const std::string& origin) {
  const auto j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  LF_CHECK(!j.is_discarded() && j.is_object(), bad, origin, ": not a JSON object");
  LF_CHECK(j.contains("peft_type") && j.at("peft_type") == "LORA", bad, origin, ": 'peft_type' must be \"LORA\"");
  LF_CHECK(j.contains("r") && j.at("r").is_number_integer() && j.at("r").get<std::int64_t>() >= 1 &&
               j.at("r").get<std::int64_t>() <= 1 << 16,
           bad, origin, ": 'r' must be an integer in [1, 65536]");
  LoraConfig c;
  c.rank = j.at("r").get<std::int64_t>();
  if (j.contains("lora_alpha")) {
    LF_CHECK(j.at("lora_alpha").is_number(), bad, origin, ": 'lora_alpha' must be a number");
    c.alpha = j.at("lora_alpha").get<double>();
  }
  if (j.contains("use_rslora")) {
    LF_CHECK(j.at("use_rslora").is_boolean(), bad, origin, ": 'use_rslora' must be true or false");
    c.rslora = j.at("use_rslora").get<bool>();
  }
  LF_CHECK(j.contains("target_modules") && j.at("target_modules").is_array() && !j.at("target_modules").empty(), bad,
           origin, ": 'target_modules' must be a non-empty list of module names");
  c.targets.clear();
  for (const auto& entry : j.at("target_modules")) add_targets(entry, c.targets, origin);
  if (j.contains("base_model_name_or_path") && j.at("base_model_name_or_path").is_string())
    c.base_model = j.at("base_model_name_or_path").get<std::string>();
  check_unused(j, "bias", !j.contains("bias") || j.at("bias") == "none", origin);
  check_unused(j, "use_dora", !j.contains("use_dora") || j.at("use_dora") == false, origin);
  check_unused(j, "rank_pattern", null_or_empty(j, "rank_pattern"), origin);
  check_unused(j, "alpha_pattern", null_or_empty(j, "alpha_pattern"), origin);
  check_unused(j, "layers_to_transform", null_or_empty(j, "layers_to_transform"), origin);
  check_unused(j, "modules_to_save", null_or_empty(j, "modules_to_save"), origin);
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(bad, cat(origin, ": ", e.what()));
  }
  return c;
}

// The rows of c_attn's lora_B outside the q, k, v subset must be zero.
void check_frozen_rows(const Tensor& b, const std::array<bool, 3>& subset, const std::string& where) {
  const std::int64_t d = b.dim(0) / 3, r = b.dim(1);
  for (int p = 0; p < 3; ++p) {
    if (subset[p]) continue;
    for (std::int64_t i = p * d * r; i < (p + 1) * d * r; ++i)
      LF_CHECK(b.at(i) == 0.0, bad, where, ": the ", "qkv"[p], " rows of lora_B must be zero (", qkv_metadata_key,
               " is '", qkv_subset_name(subset), "')");
  }
}

}  // namespace

std::string peft_tensor_name(std::int64_t layer, LoraTarget target, bool is_b) {
  return peft_prefix + tensor_suffix(layer, target, is_b);
}

template <class T>
void save_peft_adapter(const std::filesystem::path& dir, const GptLora<T>& lora) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  LF_CHECK(!ec && std::filesystem::is_directory(dir), bad, dir.string(), ": cannot create the adapter directory",
           ec ? ": " + ec.message() : "");
  TensorMap tensors;
  for (std::size_t i = 0; i < lora.layers.size(); ++i)
    for (auto t : all_lora_targets)
      if (const auto& a = lora.layers[i][static_cast<std::size_t>(t)]) {
        tensors[peft_tensor_name(static_cast<std::int64_t>(i), t, false)] = a->a;
        tensors[peft_tensor_name(static_cast<std::int64_t>(i), t, true)] = a->b;
      }
  const Metadata metadata{{"format", "pt"}, {qkv_metadata_key, qkv_subset_name(lora.config.c_attn_qkv)}};
  write_safetensors(dir / "adapter_model.safetensors", tensors, metadata);
  write_file_atomically(dir / "adapter_config.json", config_json(lora.config).dump(2) + "\n");
}

template <class T>
GptLora<T> load_peft_adapter(const std::filesystem::path& dir, const GptConfig& model) {
  const auto config_path = dir / "adapter_config.json", model_path = dir / "adapter_model.safetensors";
  GptLora<T> lora;
  lora.config = parse_config(read_text_file(config_path, max_config_bytes), config_path.string());
  auto contents = read_safetensors(model_path);
  const std::string origin = model_path.string();
  if (auto it = contents.metadata.find(qkv_metadata_key); it != contents.metadata.end()) {
    try {
      lora.config.c_attn_qkv = parse_qkv_subset(it->second);
    } catch (const Error& e) {
      throw Error(bad, cat(origin, ": metadata '", qkv_metadata_key, "': ", e.what()));
    }
  }
  TensorMap& tensors = contents.tensors;
  const bool bare = !tensors.empty() && tensors.begin()->first.rfind(peft_prefix, 0) != 0 &&
                    tensors.begin()->first.rfind(peft_prefix_bare + "h.", 0) == 0;
  const std::string& prefix = bare ? peft_prefix_bare : peft_prefix;
  auto take = [&](const std::string& name) {
    const auto it = tensors.find(prefix + name);
    LF_CHECK(it != tensors.end(), bad, origin, ": missing tensor '", prefix + name, "'");
    Tensor t = it->second.to(dtype_of<T>());
    tensors.erase(it);
    return t;
  };
  lora.layers.resize(static_cast<std::size_t>(model.n_layer));
  for (std::int64_t i = 0; i < model.n_layer; ++i)
    for (auto t : lora.config.targets) {
      LoraAdapter adapter{take(tensor_suffix(i, t, false)), take(tensor_suffix(i, t, true))};
      lora.layers[static_cast<std::size_t>(i)][static_cast<std::size_t>(t)] = std::move(adapter);
    }
  LF_CHECK(tensors.empty(), bad, origin, ": unexpected tensor '", tensors.empty() ? "" : tensors.begin()->first,
           "' (not a target of adapter_config.json or beyond the model's ", model.n_layer, " blocks)");
  validate_gpt_lora(lora, model, origin);
  for (std::int64_t i = 0; i < model.n_layer; ++i)
    if (const auto& a = lora.at(i, LoraTarget::attn_c_attn))
      check_frozen_rows(a->b, lora.config.c_attn_qkv, cat(origin, ": layer ", i, " attn.c_attn"));
  return lora;
}

template void save_peft_adapter<float>(const std::filesystem::path&, const GptLora<float>&);
template void save_peft_adapter<double>(const std::filesystem::path&, const GptLora<double>&);
template GptLora<float> load_peft_adapter<float>(const std::filesystem::path&, const GptConfig&);
template GptLora<double> load_peft_adapter<double>(const std::filesystem::path&, const GptConfig&);

}  // namespace lorafast
