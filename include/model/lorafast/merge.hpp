// A LoRA adapter merged into its base model (W + s B A, PEFT's merge), written as
// transformers' save_pretrained writes a model: config.json with the new dtype,
// safetensors sharded past a size with model.safetensors.index.json, and the
// generation config and tokenizer files copied. Streams tensor by tensor: memory
// holds the adapter plus a few copies of the largest tensor, never the model.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace lorafast {

enum class StorageType { f32, bf16, f64 };

struct MergeOptions {
  std::optional<StorageType> dtype;                 // unset: the base's (f32 for an F16 or mixed base)
  std::uint64_t max_shard_bytes = 50'000'000'000;   // transformers 5's save_pretrained default, "50GB"
  bool replace = false;                             // replace an existing output directory
};

struct MergeSummary {
  std::int64_t tensors = 0, merged = 0, files = 0;  // tensors written, of them merged; safetensors files
  std::uint64_t bytes = 0;                          // of tensor data
  StorageType dtype = StorageType::f32;
};

// Reads and checks everything (configs, the adapter against the model, every
// header, the shapes to merge into) before writing; the output directory appears
// complete or not at all (AtomicDirectory). An existing `out` without `replace` is
// Error(usage); bad input is Error(bad_input) naming the file and tensor.
MergeSummary merge_adapter(const std::filesystem::path& model, const std::filesystem::path& adapter,
                           const std::filesystem::path& out, const MergeOptions& options);

// "f32", "bf16", "f64" (Error(usage) otherwise); the name config.json gives it: "float32", ...
StorageType parse_storage_type(const std::string& text);
std::string storage_type_name(StorageType type);   // "f32"
std::string torch_dtype_name(StorageType type);    // "float32"

// A size as save_pretrained's max_shard_size takes it: bytes ("1000") or a number
// with KB, MB, GB or TB (powers of 1000, "5GB"). Error(usage) when malformed.
std::uint64_t parse_shard_size(const std::string& text);

}  // namespace lorafast
