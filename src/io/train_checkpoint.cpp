// Training checkpoints as one safetensors file (see train_checkpoint.hpp).
#include "lorafast/train_checkpoint.hpp"

#include <nlohmann/json.hpp>

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
          {"method", method_name(o.attention.method)}};
}

TrainOptions options_from(const json& j) {
  TrainOptions o;
  o.steps = j.at("steps").get<std::int64_t>();
  o.seq_len = j.at("seq_len").get<std::int64_t>();
  o.batch = j.at("batch").get<std::int64_t>();
  o.grad_accum = j.at("grad_accum").get<std::int64_t>();
  o.lr = j.at("lr").get<double>();
  o.warmup = j.at("warmup").get<std::int64_t>();
  o.min_lr_ratio = j.at("min_lr_ratio").get<double>();
  o.clip = j.at("clip").get<double>();
  o.adamw.beta1 = j.at("beta1").get<double>();
  o.adamw.beta2 = j.at("beta2").get<double>();
  o.adamw.eps = j.at("adam_eps").get<double>();
  o.adamw.weight_decay = j.at("weight_decay").get<double>();
  o.adamw.lora_plus_ratio = j.at("lora_plus_ratio").get<double>();
  o.eval_every = j.at("eval_every").get<std::int64_t>();
  o.val_windows = j.at("val_windows").get<std::int64_t>();
  o.seed = j.at("seed").get<std::uint64_t>();
  o.attention.method = parse_method(j.at("method").get<std::string>());
  return o;
}

json lora_json(const LoraConfig& c) {
  json targets = json::array();
  for (auto t : c.targets) targets.push_back(lora_target_name(t));
  return {{"rank", c.rank}, {"alpha", c.alpha}, {"rslora", c.rslora}, {"targets", targets},
          {"qkv", qkv_subset_name(c.c_attn_qkv)}, {"base_model", c.base_model}};
}

LoraConfig lora_from(const json& j) {
  LoraConfig c;
  c.rank = j.at("rank").get<std::int64_t>();
  c.alpha = j.at("alpha").get<double>();
  c.rslora = j.at("rslora").get<bool>();
  c.targets.clear();
  for (const auto& name : j.at("targets")) {
    const auto target = parse_lora_target(name.get<std::string>());
    LF_CHECK(target.has_value(), bad, "unknown LoRA target ", name.dump());
    c.targets.push_back(*target);
  }
  c.c_attn_qkv = parse_qkv_subset(j.at("qkv").get<std::string>());
  c.base_model = j.at("base_model").get<std::string>();
  return c;
}

json model_json(const GptConfig& c) {
  return {{"n_layer", c.n_layer}, {"n_head", c.n_head}, {"n_embd", c.n_embd}, {"n_positions", c.n_positions},
          {"vocab_size", c.vocab_size}, {"layer_norm_epsilon", c.layer_norm_epsilon}};
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
        LF_CHECK(it != tensors.end(), bad, origin, ": missing tensor '", name, "'");
        LF_CHECK(it->second.dtype() == dtype_of<T>(), bad, origin, ": tensor '", name, "' is ",
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
      for (auto t : all_lora_targets)
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
  write_safetensors(path, tensors, {{metadata_key, meta.dump()}});
}

template <class T>
Checkpoint<T> load_checkpoint(const std::filesystem::path& path, const GptConfig& model) {
  const std::string origin = path.string();
  auto contents = read_safetensors(path);
  const auto it = contents.metadata.find(metadata_key);
  LF_CHECK(it != contents.metadata.end(), bad, origin, ": not a lorafast checkpoint (no '", metadata_key,
           "' metadata)");
  Checkpoint<T> c;
  try {
    const json meta = json::parse(it->second);
    LF_CHECK(meta.at("format") == checkpoint_format, bad, "format ", meta.at("format").dump(), " is not ",
             checkpoint_format);
    const auto dtype = meta.at("dtype").get<std::string>();
    LF_CHECK(dtype == dtype_name(dtype_of<T>()), bad, "written in ", dtype, ", resumed in ",
             dtype_name(dtype_of<T>()), " (pass the same --dtype)");
    c.options = options_from(meta.at("options"));
    c.options.validate();
    c.state.lora.config = lora_from(meta.at("lora"));
    c.state.lora.config.validate();
    const json& m = meta.at("model");
    c.model = model;
    json positions_only = model_json(model);
    positions_only["n_positions"] = m.value("n_positions", json());
    LF_CHECK(m == model_json(model) || m != positions_only, bad, "written for the model with n_positions ",
             m.at("n_positions").dump(), ", this one has ", model.n_positions, " (resume with the same --positions)");
    LF_CHECK(m == model_json(model), bad, "written for a model with config ", m.dump(), ", this model has ",
             model_json(model).dump());
    c.data = {meta.at("data").at("tokens").get<std::uint64_t>(), meta.at("data").at("fnv1a").get<std::uint64_t>()};
    c.val_fraction = meta.at("val_fraction").get<double>();
    c.state.adamw.step = meta.at("step").get<std::int64_t>();
    LF_CHECK(c.state.adamw.step >= 0, bad, "negative step ", c.state.adamw.step);
  } catch (const nlohmann::json::exception& e) {
    throw Error(bad, cat(origin, ": corrupt checkpoint metadata: ", e.what()));
  } catch (const Error& e) {
    throw Error(bad, cat(origin, ": checkpoint ", e.what()));
  }
  const LoraConfig& config = c.state.lora.config;
  c.state.lora.layers = take_layers<T>(contents.tensors, groups[0], config, model.n_layer, origin);
  c.state.adamw.m = take_layers<T>(contents.tensors, groups[1], config, model.n_layer, origin);
  c.state.adamw.v = take_layers<T>(contents.tensors, groups[2], config, model.n_layer, origin);
  LF_CHECK(contents.tensors.empty(), bad, origin, ": unexpected tensor '",
           contents.tensors.empty() ? "" : contents.tensors.begin()->first, "'");
  validate_gpt_lora(c.state.lora, model, origin + ": lora");
  validate_gpt_lora(GptLora<T>{config, c.state.adamw.m}, model, origin + ": adam_m");
  validate_gpt_lora(GptLora<T>{config, c.state.adamw.v}, model, origin + ": adam_v");
  for (const Tensor* t : lora_tensor_list(c.state.adamw.v))
    for (std::int64_t i = 0; i < t->numel(); ++i)
      LF_CHECK(t->at(i) >= 0, bad, origin, ": adam_v has a negative second moment");
  return c;
}

DType checkpoint_dtype(const std::filesystem::path& path) {
  const auto contents = read_safetensors(path);
  const auto it = contents.metadata.find(metadata_key);
  LF_CHECK(it != contents.metadata.end(), bad, path.string(), ": not a lorafast checkpoint (no '", metadata_key,
           "' metadata)");
  const json meta = json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  const std::string dtype = meta.is_object() && meta.contains("dtype") && meta.at("dtype").is_string()
                                ? meta.at("dtype").get<std::string>()
                                : "";
  if (dtype == "F32") return DType::f32;
  if (dtype == "F64") return DType::f64;
  throw Error(bad, cat(path.string(), ": corrupt checkpoint metadata: no valid 'dtype'"));
}

template void save_checkpoint<float>(const std::filesystem::path&, const Checkpoint<float>&);
template void save_checkpoint<double>(const std::filesystem::path&, const Checkpoint<double>&);
template Checkpoint<float> load_checkpoint<float>(const std::filesystem::path&, const GptConfig&);
template Checkpoint<double> load_checkpoint<double>(const std::filesystem::path&, const GptConfig&);

}  // namespace lorafast
