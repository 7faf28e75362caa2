// Flags shared by `finetune`, `eval` and `generate`: the model directory, an
// optional PEFT adapter directory, the compute precision and a longer position
// table, the data format of `finetune` and `eval`, and how a model is loaded for its
// input (INTERFACE.md "Models, adapters, fine-tuning").
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <type_traits>

#include <CLI/CLI.hpp>

#include "lorafast/decoder.hpp"
#include "lorafast/gpt_lora.hpp"
#include "lorafast/llama.hpp"
#include "lorafast/train_data.hpp"
#include "precision.hpp"

namespace lorafast::cli {

struct GptModelFlags {
  std::string model, adapter, dtype = "f32";
  std::optional<std::int64_t> positions;  // extend_positions (gpt.hpp)

  // --model (required unless `model_required` is false), --adapter when `with_adapter`,
  // --dtype, --positions.
  void add_to(CLI::App& command, bool with_adapter, bool model_required = true);
};

// --data-format of `finetune` and `eval`, parsed into `format`.
void add_data_format_option(CLI::App& command, DataFormat& format);
// --recompute of `finetune`, `pretrain` and `model-grad`, parsed into `recompute`.
void add_recompute_option(CLI::App& command, Recompute& recompute);
// Whether the model directory holds a tokenizer.json (then text is tokenized with it).
bool model_has_tokenizer(const std::string& model_dir);
// After parsing: unless --data-format was given, jsonl for a .jsonl file or a directory
// `data`, else text when the model directory has a tokenizer.json, else bytes.
void resolve_data_format(const CLI::App& command, const GptModelFlags& flags, const std::string& data,
                         DataFormat& format);
// The tokens of --data in `format`; text goes through the model's tokenizer.json,
// its ids cached at `cache` when given (read_text_tokens).
Tokens read_data(const GptModelFlags& flags, const std::string& data, DataFormat format, std::int64_t vocab_size,
                 const std::optional<std::filesystem::path>& cache = std::nullopt);

// The default window length: 128 tokens (instruction data: rows of 1024, TRL's
// max_length), or n_positions when the model's context is shorter.
inline std::int64_t default_seq_len(const GptConfig& config, DataFormat format) {
  return std::min<std::int64_t>(format == DataFormat::jsonl ? 1024 : 128, config.n_positions);
}

// The model of --model, after checking (from config.json alone) that data in
// `format` can feed it (exit 4 otherwise), with --positions applied.
template <class T>
GptWeights<T> load_model_for_data(const GptModelFlags& flags, DataFormat format) {
  require_data_vocab(read_gpt_config(std::filesystem::path(flags.model) / "config.json"), format);
  auto weights = load_gpt_model<T>(flags.model);  // the config was read above: a gpt2 model
  if (flags.positions) extend_positions(weights, *flags.positions);
  return weights;
}

// config.json of --model, after checking that data in `format` can feed it (exit 4 otherwise).
inline GptConfig model_config_for_data(const GptModelFlags& flags, DataFormat format) {
  GptConfig config = read_gpt_config(std::filesystem::path(flags.model) / "config.json");
  require_data_vocab(config, format);
  return config;
}

// Whether --dtype `dtype` holds the frozen matrices in bf16 (with f32 compute, T = float).
template <class T>
bool frozen_bf16(const std::string& dtype) {
  return std::is_same_v<T, float> && dtype == "bf16";
}

// --dtype bf16: the frozen matrices of `weights` stored in bf16 (decoder.hpp; a no-op
// for those a loader already read as bf16), and the note of a CPU without bf16 arithmetic.
template <class W>
void apply_dtype(const std::string& dtype, W& weights) {
  if constexpr (std::is_same_v<typename W::value_type, float>) {
    if (dtype != "bf16") return;
    note_bf16_fallback(dtype);
    store_frozen_bf16(weights);
  }
}

// Runs `action(weights)` on the model of --model: GptWeights<T> for gpt2, LlamaWeights<T>
// for the Llama family, with --positions applied (a rotary model just accepts longer sequences)
// and --dtype (apply_dtype).
template <class T, class Action>
void with_model_for_data(const GptModelFlags& flags, DataFormat format, Action&& action) {
  if (!model_config_for_data(flags, format).is_llama()) {
    auto weights = load_model_for_data<T>(flags, format);
    apply_dtype(flags.dtype, weights);
    action(weights);
    return;
  }
  auto weights = load_llama_model<T>(flags.model, frozen_bf16<T>(flags.dtype));
  if (flags.positions) {
    LF_CHECK(*flags.positions >= weights.config.n_positions && *flags.positions <= (1 << 24), ErrorKind::usage,
             "--positions ", *flags.positions, " is outside [max_position_embeddings = ", weights.config.n_positions,
             ", 16777216]");
    weights.config.n_positions = *flags.positions;
  }
  apply_dtype(flags.dtype, weights);
  action(weights);
}

// The adapter of --adapter, or nothing without it.
template <class T>
std::optional<GptLora<T>> load_optional_adapter(const std::string& dir, const GptConfig& model) {
  if (dir.empty()) return std::nullopt;
  return load_peft_adapter<T>(dir, model);
}

}  // namespace lorafast::cli
