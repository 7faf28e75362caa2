// Files read whole (config.json, adapter_config.json, token lists, text corpora and
// safetensors files), with one set of checks and messages.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace lorafast {

// The file's bytes; Error(bad_input) naming the path when it is missing, a
// directory, unreadable or larger than `max_bytes`.
std::string read_text_file(const std::filesystem::path& path, std::uint64_t max_bytes);

}  // namespace lorafast
