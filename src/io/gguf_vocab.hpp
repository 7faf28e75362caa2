// The tokenizer keys of a llama.cpp model file (tokenizer.ggml.*, the chat
// template) from a model directory's tokenizer.json, tokenizer_config.json and
// chat template, as convert_hf_to_gguf.py writes them for byte-level BPE.
#pragma once

#include <cstdint>
#include <filesystem>

#include "lorafast/gguf.hpp"

namespace lorafast {

// `vocab_size`: the embedding's rows; ids the tokenizer lacks are "[PAD{id}]"
// tokens of type unused. Error(cannot_meet) for a tokenizer llama.cpp would
// tokenize differently, Error(bad_input) for a malformed one.
GgufMetadata gguf_tokenizer_metadata(const std::filesystem::path& model_dir, std::int64_t vocab_size);

}  // namespace lorafast
