// safetensors files (https://huggingface.co/docs/safetensors): an 8-byte little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__"},
// then the data. Every file is hostile input: all lengths, offsets, shapes and dtypes
// are bounds-checked and a violation throws Error(bad_input) naming the tensor or offset.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "lorafast/tensor.hpp"

namespace lorafast {

using TensorMap = std::map<std::string, Tensor>;
using Metadata = std::map<std::string, std::string>;

struct SafetensorsContents {
  TensorMap tensors;
  Metadata metadata;
};

constexpr std::uint64_t max_safetensors_header = 100'000'000;  // bytes

// F32 and F64 load as they are; F16 and BF16 are converted to F32; other dtypes are rejected.
SafetensorsContents parse_safetensors(std::span<const std::byte> file, const std::string& origin);
SafetensorsContents read_safetensors(const std::filesystem::path& path);

std::vector<std::byte> serialize_safetensors(const TensorMap& tensors, const Metadata& metadata = {});
// Atomic: written to a temporary name in the same directory, then renamed.
void write_safetensors(const std::filesystem::path& path, const TensorMap& tensors,
                       const Metadata& metadata = {});

}  // namespace lorafast
