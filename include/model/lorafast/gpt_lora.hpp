// LoRA adapters on the Conv1D modules of a GPT-2 model, in the layout Hugging Face
// PEFT uses (INTERFACE.md): per block and targeted module, lora_A [R, in] and
// lora_B [out, R]; the adapted module computes  y = x W + b + s * x A^T B^T.
// attn.c_attn shares one A across q, k, v and its B is [3D, R] (rows q | k | v);
// adapting a subset (e.g. q and v) keeps the other rows of B at zero.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "lorafast/gpt.hpp"
#include "lorafast/lora.hpp"

namespace lorafast {

// The GPT-2 Conv1D modules, then the Llama family's nn.Linear modules (llama.hpp).
enum class LoraTarget {
  attn_c_attn = 0, attn_c_proj = 1, mlp_c_fc = 2, mlp_c_proj = 3,
  q_proj = 4, k_proj = 5, v_proj = 6, o_proj = 7, gate_proj = 8, up_proj = 9, down_proj = 10
};
constexpr std::size_t lora_target_count = 11;
// GPT-2's modules (what "all" adapts on a GPT-2 model).
constexpr std::array<LoraTarget, 4> all_lora_targets{LoraTarget::attn_c_attn, LoraTarget::attn_c_proj,
                                                     LoraTarget::mlp_c_fc, LoraTarget::mlp_c_proj};
// Every slot of a LoraLayer, GPT-2's then the Llama family's.
constexpr std::array<LoraTarget, lora_target_count> every_lora_target{
    LoraTarget::attn_c_attn, LoraTarget::attn_c_proj, LoraTarget::mlp_c_fc, LoraTarget::mlp_c_proj,
    LoraTarget::q_proj, LoraTarget::k_proj, LoraTarget::v_proj, LoraTarget::o_proj,
    LoraTarget::gate_proj, LoraTarget::up_proj, LoraTarget::down_proj};

bool is_llama_target(LoraTarget target);  // q_proj ... down_proj
// The module path inside a block: "attn.c_attn", "mlp.c_fc", "self_attn.q_proj", "mlp.down_proj", ...
std::string lora_target_name(LoraTarget target);
// The name adapter_config.json's target_modules lists: the path for GPT-2, the
// module name PEFT users write for the Llama family ("q_proj").
std::string peft_module_name(LoraTarget target);
// "attn.c_attn" or its short form "c_attn", "attn.c_proj", "mlp.c_fc" or "c_fc",
// "mlp.c_proj", "q_proj" or "self_attn.q_proj" (and k, v, o), "gate_proj" or
// "mlp.gate_proj" (and up, down); anything else (including the ambiguous "c_proj") is nullopt.
std::optional<LoraTarget> parse_lora_target(const std::string& name);
// The targets a model of this family has, in every_lora_target order (`all-linear`).
std::vector<LoraTarget> model_lora_targets(const GptConfig& config);

struct LoraDims {
  std::int64_t in = 0, out = 0;
};
// e.g. c_attn: {D, 3D}, k_proj: {D, K E}. `target` must belong to the model's family.
LoraDims lora_target_dims(LoraTarget target, const GptConfig& config);

struct LoraConfig {
  std::int64_t rank = 8;  // R
  double alpha = 8.0;     // lora_alpha
  bool rslora = false;    // s = alpha / sqrt(R) instead of alpha / R
  std::vector<LoraTarget> targets{LoraTarget::attn_c_attn};
  std::array<bool, 3> c_attn_qkv{true, true, true};  // which of q, k, v attn.c_attn adapts
  std::string base_model;                            // base_model_name_or_path

  double scaling() const;  // s
  bool targets_module(LoraTarget target) const;
  // Rank >= 1, alpha finite, targets non-empty without repeats, at least one of q, k, v.
  // Throws Error(usage) (these are options) naming the field.
  void validate() const;
};

// "qkv", "qv", "q", ... in any order, each letter at most once -> flags by Projection.
std::array<bool, 3> parse_qkv_subset(const std::string& text);
std::string qkv_subset_name(const std::array<bool, 3>& subset);  // "qv"

// One slot per LoraTarget; empty when that module is not adapted.
using LoraLayer = std::array<std::optional<LoraAdapter>, lora_target_count>;

// The adapters of a whole model, in the compute precision T (every tensor has dtype T).
template <class T>
struct GptLora {
  LoraConfig config;
  std::vector<LoraLayer> layers;  // n_layer

  const std::optional<LoraAdapter>& at(std::int64_t layer, LoraTarget target) const {
    return layers.at(static_cast<std::size_t>(layer)).at(static_cast<std::size_t>(target));
  }
};

// PEFT's initialisation: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with
// a = sqrt(5)), B = 0, drawn from a deterministic generator seeded with `seed`.
template <class T>
GptLora<T> init_gpt_lora(const GptConfig& model, const LoraConfig& config, std::uint64_t seed);

// Zeroes the rows of every attn.c_attn lora_B (or of its gradient) that belong to
// projections outside config.c_attn_qkv: those rows are frozen at zero.
void mask_c_attn_rows(std::vector<LoraLayer>& layers, const LoraConfig& config);

// Checks that `lora` fits `model`: one layer per block, an adapter of rank R with
// shapes [R, in], [out, R] exactly for the targeted modules, dtype T, finite values.
// Throws Error(bad_input) naming `origin` and the tensor.
template <class T>
void validate_gpt_lora(const GptLora<T>& lora, const GptConfig& model, const std::string& origin);

// ---- PEFT adapter directory: adapter_config.json + adapter_model.safetensors

// Tensor name of an adapter matrix: "base_model.model.transformer.h.{i}.<module>.lora_A.weight"
// (GPT-2) or "base_model.model.model.layers.{i}.<module>.lora_A.weight" (the Llama family).
std::string peft_tensor_name(std::int64_t layer, LoraTarget target, bool is_b);

// Creates `dir` if needed and writes both files atomically (each to a temporary
// name, then renamed). Tensors are stored in T's dtype.
template <class T>
void save_peft_adapter(const std::filesystem::path& dir, const GptLora<T>& lora);

// Parses and validates adapter_config.json text; `origin` names the file in errors.
LoraConfig parse_peft_adapter_config(const std::string& json_text, const std::string& origin);

// Reads an adapter directory written by PEFT or save_peft_adapter for `model`.
// Missing or inconsistent files, tensors, shapes or unsupported options (DoRA,
// per-layer ranks, bias training, ...) throw Error(bad_input) naming the file.
template <class T>
GptLora<T> load_peft_adapter(const std::filesystem::path& dir, const GptConfig& model);
// The same checks on adapter tensors already parsed; `origin` names their file.
template <class T>
GptLora<T> peft_adapter_from_contents(const LoraConfig& config, SafetensorsContents contents, const GptConfig& model,
                                      const std::string& origin);

}  // namespace lorafast
