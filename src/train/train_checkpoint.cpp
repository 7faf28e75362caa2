// Training checkpoints as one safetensors file (see train_checkpoint.hpp).
#include "lorafast/train_checkpoint.hpp"

#include <nlohmann/json.hpp>

#include "core/json_read.hpp"
#include "lorafast/safetensors.hpp"

namespace lorafast {
namespace {

using nlohmann::json;
constexpr auto bad = ErrorKind::bad_input;
constexpr int checkpoint_format = 1;
constexpr const char* metadata_key = "lorafast.checkpoint";
const std::array<std::string, 3> groups{"lora/", "adam_m/", "adam_v/"};

json options_json(const TrainOptions& o) {
  return {{"steps", o.steps},
          {"seq_len", o.seq_len},
          {"batch", o.batch},
          {"grad_accum", o.grad_accum},
          {"lr", o.lr},
          {"warmup", o.warmup},
          {"min_lr_ratio", o.min_lr_ratio},
          {"clip", o.clip},
          {"beta1", o.adamw.beta1},
          {"beta2", o.adamw.beta2},
          {"adam_eps", o.adamw.eps},
          {"weight_decay", o.adamw.weight_decay},
          {"lora_plus_ratio", o.adamw.lora_plus_ratio},
          {"eval_every", o.eval_every},
          {"val_windows", o.val_windows},
          {"seed", o.seed},
          {"method", method_name(o.attention.method)},
          {"bf16", o.bf16}};
}

// Every field is checked for kind and range before it is converted; `where` names the file.
TrainOptions options_from(const json& j, const std::string& where) {
  constexpr std::int64_t max_count = std::int64_t{1} << 62;
  const auto integer = [&](const char* key, std::int64_t lo, std::int64_t hi) {
    return json_integer(require_field(j, key, where), lo, hi, cat(where, ": option '", key, "'"));
  };
  const auto number = [&](const char* key) {
    return json_number(require_field(j, key, where), cat(where, ": option '", key, "'"));
  };
  TrainOptions o;
  o.steps = integer("steps", 0, max_count);
  o.seq_len = integer("seq_len", 1, max_count);
  o.batch = integer("batch", 1, 1 << 20);
  o.grad_accum = integer("grad_accum", 1, 1 << 20);
  o.lr = number("lr");
  o.warmup = integer("warmup", 0, max_count);
  o.min_lr_ratio = number("min_lr_ratio");
  o.clip = number("clip");
  o.adamw.beta1 = number("beta1");
  o.adamw.beta2 = number("beta2");
  o.adamw.eps = number("adam_eps");
  o.adamw.weight_decay = number("weight_decay");
  o.adamw.lora_plus_ratio = number("lora_plus_ratio");
  o.eval_every = integer("eval_every", 0, max_count);
  o.val_windows = integer("val_windows", 0, max_count);
  o.seed = json_unsigned(require_field(j, "seed", where), cat(where, ": option 'seed'"));
  const std::string& method = json_string(require_field(j, "method", where), cat(where, ": option 'method'"));
  const auto known = find_method(method);
  LF_CHECK(known, bad, where, ": option 'method' ", quote(method), " is not a method");
  o.attention.method = *known;
  if (const auto it = j.find("bf16"); it != j.end()) {  // absent in checkpoints from before bf16
    LF_CHECK(it->is_boolean(), bad, where, ": option 'bf16' is a ", it->type_name(), ", not a boolean");
    o.bf16 = it->get<bool>();
  }
  return o;
}

json lora_json(const LoraConfig& c) {
  json targets = json::array();
  for (auto t : c.targets) targets.push_back(lora_target_name(t));
  return {{"rank", c.rank}, {"alpha", c.alpha}, {"rslora", c.rslora}, {"targets", targets},
          {"qkv", qkv_subset_name(c.c_attn_qkv)}, {"base_model", c.base_model}};
}

LoraConfig lora_from(const json& j, const std::string& where) {
  const auto what = [&](const char* key) { return cat(where, ": lora '", key, "'"); };
  LoraConfig c;
  c.rank = json_integer(require_field(j, "rank", where), 1, 1 << 16, what("rank"));
  c.alpha = json_number(require_field(j, "alpha", where), what("alpha"));
  c.rslora = json_bool(require_field(j, "rslora", where), what("rslora"));
  const json& targets = require_field(j, "targets", where);
  LF_CHECK(targets.is_array(), bad, what("targets"), " must be a list, got ", describe(targets));
  c.targets.clear();
  for (const auto& entry : targets) {
    const std::string& name = json_string(entry, what("targets"));
    const auto target = parse_lora_target(name);
    LF_CHECK(target.has_value(), bad, what("targets"), ": unknown LoRA target ", quote(name));
    c.targets.push_back(*target);
  }
  const std::string& qkv = json_string(require_field(j, "qkv", where), what("qkv"));
  try {
    c.c_attn_qkv = parse_qkv_subset(qkv);
  } catch (const Error& e) {  // a usage error for --qkv; here the file is at fault
    throw Error(bad, cat(what("qkv"), ": ", e.what()));
  }
  c.base_model = json_string(require_field(j, "base_model", where), what("base_model"));
  return c;
}

json model_json(const GptConfig& c) {
  json j{{"n_layer", c.n_layer}, {"n_head", c.n_head}, {"n_embd", c.n_embd}, {"n_positions", c.n_positions},
         {"vocab_size", c.vocab_size}, {"layer_norm_epsilon", c.layer_norm_epsilon}};
  if (c.is_llama()) {  // GPT-2 checkpoints keep the six fields above
    j["model_type"] = model_family_name(c.family);
    j["num_key_value_heads"] = c.llama.n_kv_head;
    j["head_dim"] = c.llama.head_dim;
    j["intermediate_size"] = c.llama.intermediate_size;
  }
  return j;
}

// The model a checkpoint was written for must be this one; the message names the first difference.
void check_same_model(const json& written, const GptConfig& model, const std::string& where) {
  const json ours = model_json(model);
  LF_CHECK(written.is_object(), bad, where, ": 'model' must be an object, got ", describe(written));
  for (const auto& [key, value] : ours.items()) {
    const json* theirs = find_field(written, key);
    LF_CHECK(theirs && *theirs == value, bad, where, ": written for a model with ", key, ' ',
             theirs ? describe(*theirs) : "missing", ", this one has ", value.dump(),
             key == "n_positions" ? " (resume with the same `positions`)" : "");
  }
  LF_CHECK(written.size() == ours.size(), bad, where, ": 'model' has fields this version does not know");
}

template <class T>
std::vector<LoraLayer> take_layers(TensorMap& tensors, const std::string& group, const LoraConfig& config,
                                   std::int64_t n_layer, const std::string& origin) {
  std::vector<LoraLayer> layers(static_cast<std::size_t>(n_layer));
  for (std::int64_t i = 0; i < n_layer; ++i)
    for (auto target : config.targets) {
      LoraAdapter adapter;
      for (bool is_b : {false, true}) {
        const std::string name = group + peft_tensor_name(i, target, is_b);
        const auto it = tensors.find(name);
        LF_CHECK(it != tensors.end(), bad, origin, ": missing tensor ", quote(name));
        LF_CHECK(it->second.dtype() == dtype_of<T>(), bad, origin, ": tensor ", quote(name), " is ",
                 dtype_name(it->second.dtype()), ", the checkpoint's dtype is ", dtype_name(dtype_of<T>()));
        (is_b ? adapter.b : adapter.a) = std::move(it->second);
        tensors.erase(it);
      }
      layers[static_cast<std::size_t>(i)][static_cast<std::size_t>(target)] = std::move(adapter);
    }
  return layers;
}

}  // namespace

template <class T>
void save_checkpoint(const std::filesystem::path& path, const Checkpoint<T>& c) {
  TensorMap tensors;
  const std::array<const std::vector<LoraLayer>*, 3> lists{&c.state.lora.layers, &c.state.adamw.m, &c.state.adamw.v};
  for (std::size_t g = 0; g < groups.size(); ++g)
    for (std::size_t i = 0; i < lists[g]->size(); ++i)
      for (auto t : every_lora_target)
        if (const auto& a = (*lists[g])[i][static_cast<std::size_t>(t)]) {
          tensors[groups[g] + peft_tensor_name(static_cast<std::int64_t>(i), t, false)] = a->a;
          tensors[groups[g] + peft_tensor_name(static_cast<std::int64_t>(i), t, true)] = a->b;
        }
  const json meta{{"format", checkpoint_format},
                  {"dtype", dtype_name(dtype_of<T>())},
                  {"step", c.state.adamw.step},
                  {"options", options_json(c.options)},
                  {"lora", lora_json(c.state.lora.config)},
                  {"model", model_json(c.model)},
                  {"data", {{"tokens", c.data.tokens}, {"fnv1a", c.data.hash}}},
                  {"val_fraction", c.val_fraction}};
  // Invalid UTF-8 (a --model path, say) is replaced rather than losing the run at its last write.
  write_safetensors(path, tensors, {{metadata_key, meta.dump(-1, ' ', false, json::error_handler_t::replace)}});
}

template <class T>
Checkpoint<T> checkpoint_from_contents(SafetensorsContents contents, const GptConfig& model, const std::string& origin) {
  const auto it = contents.metadata.find(metadata_key);
  LF_CHECK(it != contents.metadata.end(), bad, origin, ": not a lorafast checkpoint (no '", metadata_key,
           "' metadata)");
  const std::string where = origin + ": checkpoint";
  const json meta = parse_json(it->second, where);
  LF_CHECK(meta.is_object(), bad, where, ": metadata is ", describe(meta), ", not an object");
  const json& format = require_field(meta, "format", where);
  LF_CHECK(format == checkpoint_format, bad, where, ": format ", describe(format), " is not ", checkpoint_format);
  const std::string& dtype = json_string(require_field(meta, "dtype", where), where + ": 'dtype'");
  LF_CHECK(dtype == dtype_name(dtype_of<T>()), bad, where, ": written in ", quote(dtype), ", resumed in ",
           dtype_name(dtype_of<T>()), " (pass the same `dtype`)");
  Checkpoint<T> c;
  c.options = options_from(require_field(meta, "options", where), where);
  c.state.lora.config = lora_from(require_field(meta, "lora", where), where);
  try {  // the remaining checks are the command line's; here they blame the file
    c.options.validate();
    c.state.lora.config.validate();
  } catch (const Error& e) {
    throw Error(bad, cat(where, ": invalid options: ", e.what()));
  }
  check_same_model(require_field(meta, "model", where), model, where);
  c.model = model;
  const json& data = require_field(meta, "data", where);
  c.data = {json_unsigned(require_field(data, "tokens", where), where + ": data 'tokens'"),
            json_unsigned(require_field(data, "fnv1a", where), where + ": data 'fnv1a'")};
  c.val_fraction = json_number(require_field(meta, "val_fraction", where), where + ": 'val_fraction'");
  LF_CHECK(c.val_fraction >= 0 && c.val_fraction < 1, bad, where, ": 'val_fraction' must be in [0, 1), got ",
           c.val_fraction);
  c.state.adamw.step = json_integer(require_field(meta, "step", where), 0, std::int64_t{1} << 62, where + ": 'step'");

  const LoraConfig& config = c.state.lora.config;
  c.state.lora.layers = take_layers<T>(contents.tensors, groups[0], config, model.n_layer, origin);
  c.state.adamw.m = take_layers<T>(contents.tensors, groups[1], config, model.n_layer, origin);
  c.state.adamw.v = take_layers<T>(contents.tensors, groups[2], config, model.n_layer, origin);
  LF_CHECK(contents.tensors.empty(), bad, origin, ": unexpected tensor ",
           contents.tensors.empty() ? "" : quote(contents.tensors.begin()->first));
  validate_gpt_lora(c.state.lora, model, origin + ": lora");
  validate_gpt_lora(GptLora<T>{config, c.state.adamw.m}, model, origin + ": adam_m");
  validate_gpt_lora(GptLora<T>{config, c.state.adamw.v}, model, origin + ": adam_v");
  for (const Tensor* t : lora_tensor_list(c.state.adamw.v))
    for (std::int64_t i = 0; i < t->numel(); ++i)
      LF_CHECK(t->at(i) >= 0, bad, origin, ": adam_v has a negative second moment");
  return c;
}

template <class T>
Checkpoint<T> load_checkpoint(const std::filesystem::path& path, const GptConfig& model) {
  return checkpoint_from_contents<T>(read_safetensors(path), model, path.string());
}

DType checkpoint_dtype(const std::filesystem::path& path) {
  const auto contents = read_safetensors(path);
  const auto it = contents.metadata.find(metadata_key);
  const std::string where = path.string() + ": checkpoint";
  LF_CHECK(it != contents.metadata.end(), bad, path.string(), ": not a lorafast checkpoint (no '", metadata_key,
           "' metadata)");
  const json meta = parse_json(it->second, where);
  const std::string& dtype = json_string(require_field(meta, "dtype", where), where + ": 'dtype'");
  if (dtype == "F64") return DType::f64;
  if (dtype == "F32") {
    const json& options = require_field(meta, "options", where);
    return options_from(options, where).bf16 ? DType::bf16 : DType::f32;
  }
  throw Error(bad, cat(where, ": 'dtype' ", quote(dtype), " is not F32 or F64"));
}

template void save_checkpoint<float>(const std::filesystem::path&, const Checkpoint<float>&);
template void save_checkpoint<double>(const std::filesystem::path&, const Checkpoint<double>&);
template Checkpoint<float> load_checkpoint<float>(const std::filesystem::path&, const GptConfig&);
template Checkpoint<double> load_checkpoint<double>(const std::filesystem::path&, const GptConfig&);
template Checkpoint<float> checkpoint_from_contents<float>(SafetensorsContents, const GptConfig&, const std::string&);
template Checkpoint<double> checkpoint_from_contents<double>(SafetensorsContents, const GptConfig&, const std::string&);

}  // namespace lorafast
