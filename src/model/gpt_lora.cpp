// LoRA configuration, PEFT-style initialisation and consistency checks of the
// adapters of a GPT-2 model.
#include <algorithm>
#include <cmath>
#include <random>

#include "lorafast/gpt_lora.hpp"

namespace lorafast {

bool is_llama_target(LoraTarget target) { return static_cast<int>(target) >= static_cast<int>(LoraTarget::q_proj); }

std::string lora_target_name(LoraTarget target) {
  switch (target) {
    case LoraTarget::attn_c_attn: return "attn.c_attn";
    case LoraTarget::attn_c_proj: return "attn.c_proj";
    case LoraTarget::mlp_c_fc: return "mlp.c_fc";
    case LoraTarget::mlp_c_proj: return "mlp.c_proj";
    case LoraTarget::q_proj: return "self_attn.q_proj";
    case LoraTarget::k_proj: return "self_attn.k_proj";
    case LoraTarget::v_proj: return "self_attn.v_proj";
    case LoraTarget::o_proj: return "self_attn.o_proj";
    case LoraTarget::gate_proj: return "mlp.gate_proj";
    case LoraTarget::up_proj: return "mlp.up_proj";
    case LoraTarget::down_proj: return "mlp.down_proj";
  }
  LF_ASSERT(false);
}

std::string peft_module_name(LoraTarget target) {
  const std::string path = lora_target_name(target);
  return is_llama_target(target) ? path.substr(path.find('.') + 1) : path;
}

std::optional<LoraTarget> parse_lora_target(const std::string& name) {
  if (name == "c_attn") return LoraTarget::attn_c_attn;
  if (name == "c_fc") return LoraTarget::mlp_c_fc;
  for (auto t : every_lora_target)
    if (name == lora_target_name(t) || (is_llama_target(t) && name == peft_module_name(t))) return t;
  return std::nullopt;
}

std::vector<LoraTarget> model_lora_targets(const GptConfig& config) {
  std::vector<LoraTarget> targets;
  for (auto t : every_lora_target)
    if (is_llama_target(t) == config.is_llama()) targets.push_back(t);
  return targets;
}

LoraDims lora_target_dims(LoraTarget target, const GptConfig& config) {
  LF_ASSERT(is_llama_target(target) == config.is_llama());
  const std::int64_t d = config.n_embd, q = config.n_head * config.head_dim();
  const std::int64_t kv = config.llama.n_kv_head * config.head_dim(), f = config.llama.intermediate_size;
  switch (target) {
    case LoraTarget::attn_c_attn: return {d, 3 * d};
    case LoraTarget::attn_c_proj: return {d, d};
    case LoraTarget::mlp_c_fc: return {d, 4 * d};
    case LoraTarget::mlp_c_proj: return {4 * d, d};
    case LoraTarget::q_proj: return {d, q};
    case LoraTarget::k_proj:
    case LoraTarget::v_proj: return {d, kv};
    case LoraTarget::o_proj: return {q, d};
    case LoraTarget::gate_proj:
    case LoraTarget::up_proj: return {d, f};
    case LoraTarget::down_proj: return {f, d};
  }
  LF_ASSERT(false);
}

namespace {

// Every target of `config` is a module of `model`'s family.
void check_family(const LoraConfig& config, const GptConfig& model, ErrorKind kind, const std::string& origin) {
  for (auto t : config.targets)
    LF_CHECK(is_llama_target(t) == model.is_llama(), kind, origin, origin.empty() ? "" : ": ", "LoRA target '",
             peft_module_name(t), "' is not a module of a ", model_family_name(model.family), " model");
}

}  // namespace

double LoraConfig::scaling() const {
  return rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

bool LoraConfig::targets_module(LoraTarget target) const {
  return std::find(targets.begin(), targets.end(), target) != targets.end();
}

void LoraConfig::validate() const {
  constexpr auto usage = ErrorKind::usage;
  LF_CHECK(rank >= 1 && rank <= 1 << 16, usage, "LoRA rank must be in [1, 65536], got ", rank);
  LF_CHECK(std::isfinite(alpha), usage, "LoRA alpha must be finite, got ", alpha);
  LF_CHECK(!targets.empty(), usage, "LoRA needs at least one target module");
  for (std::size_t i = 0; i < targets.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      LF_CHECK(targets[i] != targets[j], usage, "LoRA target '", lora_target_name(targets[i]), "' given twice");
  LF_CHECK(c_attn_qkv[0] || c_attn_qkv[1] || c_attn_qkv[2], usage, "attn.c_attn must adapt at least one of q, k, v");
}

std::array<bool, 3> parse_qkv_subset(const std::string& text) {
  std::array<bool, 3> subset{false, false, false};
  for (char c : text) {
    const auto pos = std::string("qkv").find(c);
    LF_CHECK(pos != std::string::npos && !subset[pos], ErrorKind::usage, quote(text),
             " is not a subset of q, k, v (e.g. qkv or qv)");
    subset[pos] = true;
  }
  LF_CHECK(!text.empty(), ErrorKind::usage, "the q, k, v subset is empty");
  return subset;
}

std::string qkv_subset_name(const std::array<bool, 3>& subset) {
  std::string name;
  for (int p = 0; p < 3; ++p)
    if (subset[p]) name += "qkv"[p];
  return name;
}

template <class T>
GptLora<T> init_gpt_lora(const GptConfig& model, const LoraConfig& config, std::uint64_t seed) {
  config.validate();
  check_family(config, model, ErrorKind::usage, "");
  GptLora<T> lora;
  lora.config = config;
  lora.layers.resize(static_cast<std::size_t>(model.n_layer));
  std::mt19937_64 rng(seed);
  for (auto& layer : lora.layers)
    for (auto target : every_lora_target) {
      if (!config.targets_module(target)) continue;
      const auto dims = lora_target_dims(target, model);
      const double bound = 1.0 / std::sqrt(static_cast<double>(dims.in));
      std::uniform_real_distribution<double> uniform(-bound, bound);
      LoraAdapter adapter{Tensor(dtype_of<T>(), {config.rank, dims.in}), Tensor(dtype_of<T>(), {dims.out, config.rank})};
      T* a = adapter.a.data<T>();
      for (std::int64_t i = 0; i < adapter.a.numel(); ++i) a[i] = static_cast<T>(uniform(rng));
      layer[static_cast<std::size_t>(target)] = std::move(adapter);
    }
  return lora;
}

void mask_c_attn_rows(std::vector<LoraLayer>& layers, const LoraConfig& config) {
  for (auto& layer : layers) {
    auto& adapter = layer[static_cast<std::size_t>(LoraTarget::attn_c_attn)];
    if (!adapter) continue;
    Tensor& b = adapter->b;  // [3D, R]
    const std::int64_t d = b.dim(0) / 3, r = b.dim(1);
    for (int p = 0; p < 3; ++p) {
      if (config.c_attn_qkv[p]) continue;
      std::byte* rows = b.bytes() + static_cast<std::size_t>(p * d * r) * dtype_size(b.dtype());
      std::fill(rows, rows + static_cast<std::size_t>(d * r) * dtype_size(b.dtype()), std::byte{0});
    }
  }
}

template <class T>
void validate_gpt_lora(const GptLora<T>& lora, const GptConfig& model, const std::string& origin) {
  constexpr auto bad = ErrorKind::bad_input;
  LF_CHECK(static_cast<std::int64_t>(lora.layers.size()) == model.n_layer, bad, origin, ": ", lora.layers.size(),
           " adapter layers for a model of ", model.n_layer, " blocks");
  const std::int64_t r = lora.config.rank;
  LF_CHECK(r >= 1, bad, origin, ": LoRA rank must be at least 1, got ", r);
  check_family(lora.config, model, bad, origin);
  for (std::int64_t i = 0; i < model.n_layer; ++i)
    for (auto target : every_lora_target) {
      const auto& adapter = lora.at(i, target);
      const std::string where = cat(origin, ": layer ", i, " module '", lora_target_name(target), "'");
      LF_CHECK(adapter.has_value() == lora.config.targets_module(target), bad, where,
               adapter ? " has an adapter but is not a target" : " is a target but has no adapter");
      if (!adapter) continue;
      const auto dims = lora_target_dims(target, model);
      LF_CHECK(adapter->a.shape() == Shape({r, dims.in}), bad, where, ": lora_A has shape ",
               shape_str(adapter->a.shape()), ", expected ", shape_str({r, dims.in}));
      LF_CHECK(adapter->b.shape() == Shape({dims.out, r}), bad, where, ": lora_B has shape ",
               shape_str(adapter->b.shape()), ", expected ", shape_str({dims.out, r}));
      LF_CHECK(adapter->a.dtype() == dtype_of<T>() && adapter->b.dtype() == dtype_of<T>(), bad, where,
               ": adapter dtype is not ", dtype_name(dtype_of<T>()));
      LF_CHECK(adapter->a.all_finite() && adapter->b.all_finite(), bad, where, ": adapter has NaN or Inf values");
    }
}

template GptLora<float> init_gpt_lora<float>(const GptConfig&, const LoraConfig&, std::uint64_t);
template GptLora<double> init_gpt_lora<double>(const GptConfig&, const LoraConfig&, std::uint64_t);
template void validate_gpt_lora<float>(const GptLora<float>&, const GptConfig&, const std::string&);
template void validate_gpt_lora<double>(const GptLora<double>&, const GptConfig&, const std::string&);

}  // namespace lorafast
