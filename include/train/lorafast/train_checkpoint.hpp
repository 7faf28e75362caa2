// Training checkpoints: everything needed to continue a fine-tuning run exactly —
// the adapters, both AdamW moments and the step count (dtype T, bit for bit), the
// options, the model's config, the LoRA config and the data's fingerprint (the
// window sampler is counter-based, so (seed, step) is its whole random state).
//
// One safetensors file, written atomically (temporary name, then rename), so a
// checkpoint is either the previous one or the new one, never a mixture:
//   tensors  "lora/<peft name>", "adam_m/<peft name>", "adam_v/<peft name>"
//   metadata "lorafast.checkpoint": JSON {format, dtype, step, options, lora,
//            model, data, val_fraction}
#pragma once

#include <filesystem>

#include "lorafast/safetensors.hpp"
#include "lorafast/train_loop.hpp"

namespace lorafast {

template <class T>
struct Checkpoint {
  TrainState<T> state;   // state.lora.config is the LoRA config of the run
  TrainOptions options;
  GptConfig model;
  DataFingerprint data;
  double val_fraction = 0.0;
};

template <class T>
void save_checkpoint(const std::filesystem::path& path, const Checkpoint<T>& checkpoint);

// Reads and checks a checkpoint for `model`: Error(bad_input) naming the file when
// it is missing or corrupt, was written in another precision than T or for a model
// of another shape, or its tensors do not match its LoRA config (shape, dtype,
// NaN/Inf, a negative second moment).
template <class T>
Checkpoint<T> load_checkpoint(const std::filesystem::path& path, const GptConfig& model);

// The same checks on a checkpoint file already parsed; `origin` names the file.
template <class T>
Checkpoint<T> checkpoint_from_contents(SafetensorsContents contents, const GptConfig& model, const std::string& origin);

// The precision a checkpoint's run computed in (to resume in the same one): F64, F32,
// or bf16 for a --dtype bf16 run (whose adapters and state are F32).
DType checkpoint_dtype(const std::filesystem::path& path);

}  // namespace lorafast
