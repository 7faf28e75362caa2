// Atomic file output: the bytes go to a temporary file beside the target, which is
// renamed over it only once complete, so a failure never leaves a partial file.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string_view>

namespace lorafast {

void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes);
void write_file_atomically(const std::filesystem::path& path, std::string_view text);

}  // namespace lorafast
