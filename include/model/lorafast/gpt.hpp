// A GPT-2 model in the Hugging Face layout (INTERFACE.md "Models, adapters,
// fine-tuning"): config.json + model.safetensors, Conv1D weights [in, out], pre-LN
// blocks, GELU (tanh form), the LM head tied to wte. Fine-tuning trains LoRA
// adapters (gpt_lora.hpp) on frozen base weights; pretraining trains every base
// weight (gpt_loss_and_full_grad in gpt_loss.hpp).
//
// Shape legend: V vocabulary, P positions (n_positions), D width = H * E,
// N batch, T sequence length (<= P).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "lorafast/llama_config.hpp"
#include "lorafast/safetensors.hpp"
#include "lorafast/tensor.hpp"

namespace lorafast {

// The sizes of a decoder-only model. `family` gpt2 is GPT-2 as below; the Llama
// family (llama_config.hpp, llama.hpp) maps hidden_size, num_hidden_layers,
// num_attention_heads, max_position_embeddings and rms_norm_eps onto the same
// fields and keeps the rest in `llama`.
struct GptConfig {
  std::int64_t n_layer = 0;
  std::int64_t n_head = 0;
  std::int64_t n_embd = 0;       // D
  std::int64_t n_positions = 0;  // P, the longest sequence
  std::int64_t vocab_size = 0;   // V
  double layer_norm_epsilon = 1e-5;  // the Llama family: rms_norm_eps
  ModelFamily family = ModelFamily::gpt2;
  LlamaConfig llama;  // only for the Llama family

  bool is_llama() const { return family != ModelFamily::gpt2; }
  std::int64_t head_dim() const { return is_llama() ? llama.head_dim : n_embd / n_head; }  // E
  // Positive sizes, n_head dividing n_embd (GPT-2) or n_kv_head dividing n_head
  // (Llama), epsilon > 0 and finite, sizes small enough that no tensor byte count
  // overflows. Throws Error(bad_input) citing `origin`.
  void validate(const std::string& origin) const;
};

// Parses and validates config.json text; `origin` names the file in error messages.
// `model_type` (default "gpt2") selects the family; an unknown one is an error.
// GPT-2: the six sizes above are required, as JSON numbers, other keys ignored.
// The Llama family: parse_llama_config (llama.hpp).
GptConfig parse_gpt_config(const std::string& json_text, const std::string& origin);
GptConfig read_gpt_config(const std::filesystem::path& path);

// One transformer block; every tensor has dtype T of the enclosing GptWeights<T>.
struct GptBlockWeights {
  Tensor ln_1_weight, ln_1_bias;              // [D], [D]
  Tensor attn_c_attn_weight, attn_c_attn_bias;  // [D, 3D], [3D]   (q | k | v columns)
  Tensor attn_c_proj_weight, attn_c_proj_bias;  // [D, D], [D]
  Tensor ln_2_weight, ln_2_bias;              // [D], [D]
  Tensor mlp_c_fc_weight, mlp_c_fc_bias;      // [D, 4D], [4D]
  Tensor mlp_c_proj_weight, mlp_c_proj_bias;  // [4D, D], [D]
};

template <class T>
struct GptWeights {
  using value_type = T;
  GptConfig config;
  Tensor wte;  // [V, D]  token embedding, also the (tied) LM head
  Tensor wpe;  // [P, D]  position embedding
  std::vector<GptBlockWeights> blocks;  // n_layer
  Tensor ln_f_weight, ln_f_bias;        // [D], [D]
};

// Every tensor of a GptWeights (of weights, or of a gradient or optimizer state of
// the same layout) with its GPT-2 name without prefix, in a fixed order: wte.weight,
// wpe.weight, then per block h.{i}.ln_1.weight, ln_1.bias, attn.c_attn.weight,
// attn.c_attn.bias, attn.c_proj.weight, attn.c_proj.bias, ln_2.weight, ln_2.bias,
// mlp.c_fc.weight, mlp.c_fc.bias, mlp.c_proj.weight, mlp.c_proj.bias; then
// ln_f.weight, ln_f.bias. Two GptWeights of one config list matching tensors at
// matching indices.
template <class T>
std::vector<std::pair<std::string, Tensor*>> gpt_named_tensors(GptWeights<T>& weights);
template <class T>
std::vector<std::pair<std::string, const Tensor*>> gpt_named_tensors(const GptWeights<T>& weights);

// All-zero weights of the shapes `config` implies (e.g. a gradient accumulator).
template <class T>
GptWeights<T> zero_gpt_weights(const GptConfig& config);

// "transformer." when `tensors` spells GPT-2 names with that prefix (decided by
// "transformer.wte.weight" being present), else "".
std::string gpt_tensor_prefix(const TensorMap& tensors);

// The weights named in `tensors` (GPT-2 names, with or without the "transformer."
// prefix; "lm_head.weight" and the attention-mask buffers "h.{i}.attn.bias" /
// "h.{i}.attn.masked_bias" are ignored, other unknown names too, except blocks
// h.{i} with i >= n_layer). Every tensor must be present with the shape the config
// implies and finite values; it is converted to T. Errors: Error(bad_input) naming
// `origin` and the tensor.
template <class T>
GptWeights<T> gpt_weights_from_tensors(const GptConfig& config, const TensorMap& tensors,
                                       const std::string& origin);

// A model directory: config.json and model.safetensors.
template <class T>
GptWeights<T> load_gpt_model(const std::filesystem::path& dir);

// Lets the model run sequences of up to `positions` tokens (`--positions`): wpe grows
// to `positions` rows, row t a copy of trained row t mod n_positions, and n_positions
// becomes `positions`. Repeating rather than interpolating keeps rows 0..P-1 as
// trained, so the model is unchanged on its trained context (an adapter fine-tuned on
// the extended model loads against, and means the same on, the unmodified base for
// T <= P) and every row is one the model has seen. Error(usage) when `positions` is
// outside [n_positions, 2^24].
template <class T>
void extend_positions(GptWeights<T>& weights, std::int64_t positions);

// config.json text for `config`: the six sizes plus the Hugging Face GPT2Config
// keys that pin what this implementation computes (model_type "gpt2",
// activation_function "gelu_new", n_ctx, no dropout, tied embeddings).
std::string gpt_config_json(const GptConfig& config);

// Writes a model directory that load_gpt_model and Hugging Face
// GPT2LMHeadModel.from_pretrained read: `dir` is created if missing, then
// model.safetensors (every tensor under its GPT-2 name with the "transformer."
// prefix, dtype T, metadata {"format": "pt"}) and config.json, each atomically.
// Errors: Error(bad_input) naming the path.
template <class T>
void save_gpt_model(const std::filesystem::path& dir, const GptWeights<T>& weights);

}  // namespace lorafast
