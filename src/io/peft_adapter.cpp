// PEFT adapter directories (INTERFACE.md): adapter_config.json and
// adapter_model.safetensors with base_model.model.transformer.h.{i}.<module>.lora_{A,B}.weight
// (GPT-2) or base_model.model.model.layers.{i}.<module>.lora_{A,B}.weight (the Llama family).
// Which of q, k, v an attn.c_attn adapter updates is not a PEFT notion; it is kept
// in the safetensors metadata ("lorafast.c_attn_qkv"), which PEFT ignores, and
// checked on load against the rows of lora_B that must be zero.
#include <cctype>
#include <set>

#include <nlohmann/json.hpp>

#include "core/json_read.hpp"
#include "core/text_file.hpp"
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
const std::string peft_prefix_llama = "base_model.model.model.";

std::string tensor_suffix(std::int64_t layer, LoraTarget target, bool is_b) {
  return cat(is_llama_target(target) ? "layers." : "h.", layer, '.', lora_target_name(target),
             is_b ? ".lora_B.weight" : ".lora_A.weight");
}

json config_json(const LoraConfig& c) {
  json targets = json::array();
  for (auto t : c.targets) targets.push_back(peft_module_name(t));
  // Conv1D weights are [in, out] (fan_in_fan_out), nn.Linear ones [out, in].
  const bool conv1d = c.targets.empty() || !is_llama_target(c.targets.front());
  return {{"peft_type", "LORA"},
          {"task_type", "CAUSAL_LM"},
          {"r", c.rank},
          {"lora_alpha", c.alpha},
          {"target_modules", targets},
          {"fan_in_fan_out", conv1d},
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
  const json* value = find_field(j, key);
  LF_CHECK(!value || unused, bad, origin, ": '", key, "' ", value ? describe(*value) : "", " is not supported");
}

bool null_or_empty(const json& j, const char* key) {
  const json* value = find_field(j, key);
  return !value || value->is_null() || (value->is_structured() && value->empty());
}

// "model.layers.3.self_attn.q_proj" (PEFT's expansion of all-linear names every
// module of every layer) -> "self_attn.q_proj"; other names as they are. Whether
// every layer is covered is checked by the tensors: each targeted module needs its
// pair in every layer.
std::string module_of(const std::string& name) {
  for (const char* marker : {"layers.", "h."}) {
    const auto at = name.rfind(marker);
    if (at == std::string::npos || (at > 0 && name[at - 1] != '.')) continue;
    std::size_t end = at + std::string(marker).size(), digits = end;
    while (digits < name.size() && std::isdigit(static_cast<unsigned char>(name[digits]))) ++digits;
    if (digits > end && digits < name.size() && name[digits] == '.') return name.substr(digits + 1);
  }
  return name;
}

void add_targets(const json& entry, std::vector<LoraTarget>& targets, const std::string& origin) {
  const std::string name = module_of(json_string(entry, cat(origin, ": 'target_modules' entry")));
  std::vector<LoraTarget> found;
  if (name == "c_proj") found = {LoraTarget::attn_c_proj, LoraTarget::mlp_c_proj};  // PEFT matches both
  else if (auto t = parse_lora_target(name)) found = {*t};
  LF_CHECK(!found.empty(), bad, origin, ": target module ", quote(name),
           " is not supported (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj; q_proj, k_proj, v_proj, o_proj, "
           "gate_proj, up_proj, down_proj)");
  for (auto t : found)
    if (std::find(targets.begin(), targets.end(), t) == targets.end()) targets.push_back(t);
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

void check_model_family(const LoraConfig& config, const GptConfig& model, const std::string& origin) {
  for (auto t : config.targets)
    LF_CHECK(is_llama_target(t) == model.is_llama(), bad, origin, ": target module '", peft_module_name(t),
             "' is not supported by a ", model_family_name(model.family), " model");
}

}  // namespace

LoraConfig parse_peft_adapter_config(const std::string& json_text, const std::string& origin) {
  const auto j = parse_json(json_text, origin);
  LF_CHECK(j.is_object(), bad, origin, ": not a JSON object");
  const json* peft_type = find_field(j, "peft_type");
  LF_CHECK(peft_type && *peft_type == "LORA", bad, origin, ": 'peft_type' must be \"LORA\"");
  LoraConfig c;
  c.rank = json_integer(require_field(j, "r", origin), 1, 1 << 16, cat(origin, ": 'r'"));
  if (const json* alpha = find_field(j, "lora_alpha")) c.alpha = json_number(*alpha, cat(origin, ": 'lora_alpha'"));
  if (const json* rslora = find_field(j, "use_rslora")) c.rslora = json_bool(*rslora, cat(origin, ": 'use_rslora'"));
  const json* modules = find_field(j, "target_modules");
  LF_CHECK(modules && modules->is_array() && !modules->empty(), bad, origin,
           ": 'target_modules' must be a non-empty list of module names");
  c.targets.clear();
  for (const auto& entry : *modules) add_targets(entry, c.targets, origin);
  if (const json* base = find_field(j, "base_model_name_or_path"); base && base->is_string())
    c.base_model = base->get<std::string>();
  const json* bias = find_field(j, "bias");
  check_unused(j, "bias", !bias || *bias == "none", origin);
  const json* dora = find_field(j, "use_dora");
  check_unused(j, "use_dora", !dora || *dora == false, origin);
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

std::string peft_tensor_name(std::int64_t layer, LoraTarget target, bool is_b) {
  return (is_llama_target(target) ? peft_prefix_llama : peft_prefix) + tensor_suffix(layer, target, is_b);
}

template <class T>
void save_peft_adapter(const std::filesystem::path& dir, const GptLora<T>& lora) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  LF_CHECK(!ec && std::filesystem::is_directory(dir), bad, dir.string(), ": cannot create the adapter directory",
           ec ? ": " + ec.message() : "");
  TensorMap tensors;
  for (std::size_t i = 0; i < lora.layers.size(); ++i)
    for (auto t : every_lora_target)
      if (const auto& a = lora.layers[i][static_cast<std::size_t>(t)]) {
        tensors[peft_tensor_name(static_cast<std::int64_t>(i), t, false)] = a->a;
        tensors[peft_tensor_name(static_cast<std::int64_t>(i), t, true)] = a->b;
      }
  const Metadata metadata{{"format", "pt"}, {qkv_metadata_key, qkv_subset_name(lora.config.c_attn_qkv)}};
  // Serialized before anything is written; bytes of base_model_name_or_path that
  // are not UTF-8 (it is a path) become U+FFFD rather than failing the save.
  const std::string config_text = config_json(lora.config).dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  write_safetensors(dir / "adapter_model.safetensors", tensors, metadata);
  write_file_atomically(dir / "adapter_config.json", config_text);
}

template <class T>
GptLora<T> peft_adapter_from_contents(const LoraConfig& config, SafetensorsContents contents, const GptConfig& model,
                                      const std::string& origin) {
  GptLora<T> lora;
  lora.config = config;
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
  const std::string& prefix = model.is_llama() ? peft_prefix_llama : bare ? peft_prefix_bare : peft_prefix;
  auto take = [&](const std::string& name) {
    const auto it = tensors.find(prefix + name);
    LF_CHECK(it != tensors.end(), bad, origin, ": missing tensor ", quote(prefix + name));
    Tensor t = it->second.to(dtype_of<T>());
    tensors.erase(it);
    return t;
  };
  check_model_family(lora.config, model, origin);
  lora.layers.resize(static_cast<std::size_t>(model.n_layer));
  for (std::int64_t i = 0; i < model.n_layer; ++i)
    for (auto t : lora.config.targets) {
      LoraAdapter adapter{take(tensor_suffix(i, t, false)), take(tensor_suffix(i, t, true))};
      lora.layers[static_cast<std::size_t>(i)][static_cast<std::size_t>(t)] = std::move(adapter);
    }
  LF_CHECK(tensors.empty(), bad, origin, ": unexpected tensor ", tensors.empty() ? "" : quote(tensors.begin()->first),
           " (not a target of adapter_config.json or beyond the model's ", model.n_layer, " blocks)");
  validate_gpt_lora(lora, model, origin);
  for (std::int64_t i = 0; i < model.n_layer; ++i)
    if (const auto& a = lora.at(i, LoraTarget::attn_c_attn))
      check_frozen_rows(a->b, lora.config.c_attn_qkv, cat(origin, ": layer ", i, " attn.c_attn"));
  return lora;
}

template <class T>
GptLora<T> load_peft_adapter(const std::filesystem::path& dir, const GptConfig& model) {
  const auto config_path = dir / "adapter_config.json", model_path = dir / "adapter_model.safetensors";
  const LoraConfig config =
      parse_peft_adapter_config(read_text_file(config_path, max_config_bytes), config_path.string());
  check_model_family(config, model, config_path.string());
  return peft_adapter_from_contents<T>(config, read_safetensors(model_path), model, model_path.string());
}

template void save_peft_adapter<float>(const std::filesystem::path&, const GptLora<float>&);
template void save_peft_adapter<double>(const std::filesystem::path&, const GptLora<double>&);
template GptLora<float> load_peft_adapter<float>(const std::filesystem::path&, const GptConfig&);
template GptLora<double> load_peft_adapter<double>(const std::filesystem::path&, const GptConfig&);
template GptLora<float> peft_adapter_from_contents<float>(const LoraConfig&, SafetensorsContents, const GptConfig&,
                                                          const std::string&);
template GptLora<double> peft_adapter_from_contents<double>(const LoraConfig&, SafetensorsContents, const GptConfig&,
                                                            const std::string&);

}  // namespace lorafast
