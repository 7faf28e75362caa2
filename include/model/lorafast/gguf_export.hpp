// `lorafast export gguf`: a model directory (with a PEFT adapter merged, or none)
// as a llama.cpp model file, or the adapter alone as a llama.cpp LoRA file. Names,
// layouts and keys follow llama.cpp's convert_hf_to_gguf.py and
// convert_lora_to_gguf.py (gguf-py constants): blk.N.attn_q ..., Llama's q/k rows
// permuted for its rotary layout (Mistral's too, Qwen's not), GPT-2's Conv1D
// weights transposed, 1-D tensors kept f32, llama3 rope factors as rope_freqs. What
// llama.cpp cannot express (llama3 rope on Qwen, a sliding window shorter than the
// context, Qwen3 biases, a
// tokenizer that is not byte-level BPE with a split pattern llama.cpp names) is
// Error(cannot_meet) naming it, never silently changed.
#pragma once

#include <filesystem>
#include <optional>

#include "lorafast/gguf.hpp"

namespace lorafast {

struct GgufExportOptions {
  GgmlType type = GgmlType::f32;  // 2-D weights; q8_0 falls back to f16 for rows not a multiple of 32, as llama.cpp's converter does
  bool adapter_only = false;      // the adapter as a LoRA GGUF, for the base model's GGUF
  bool replace = false;           // overwrite an existing --out
};

struct GgufExportSummary {
  std::int64_t tensors = 0, keys = 0;
  std::string architecture;
};

GgufExportSummary export_gguf(const std::filesystem::path& model, const std::optional<std::filesystem::path>& adapter,
                              const std::filesystem::path& out, const GgufExportOptions& options);

}  // namespace lorafast
