// GGUF files (llama.cpp's model format, version 3): a header of typed key-value
// pairs and tensor descriptions, then the tensors' data, each aligned to 32 bytes.
// Written tensor by tensor, as the safetensors writer is (safetensors_stream.hpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "lorafast/atomic_file.hpp"
#include "lorafast/tensor.hpp"

namespace lorafast {

// ggml's tensor types that lorafast writes (GGMLQuantizationType in gguf-py).
enum class GgmlType : std::uint32_t { f32 = 0, f16 = 1, q8_0 = 8, bf16 = 30 };

GgmlType parse_ggml_type(const std::string& text);  // "f32", "f16", "bf16", "q8_0"; Error(usage) otherwise
std::string ggml_type_name(GgmlType type);

using GgufValue = std::variant<std::uint32_t, std::int32_t, float, bool, std::string, std::vector<std::string>,
                               std::vector<std::int32_t>, std::vector<float>>;
using GgufMetadata = std::vector<std::pair<std::string, GgufValue>>;

struct GgufTensor {
  std::string name;
  Shape shape;  // PyTorch order ([rows, cols]); GGUF stores it reversed
  GgmlType type = GgmlType::f32;
};

// Bytes of a tensor of `shape` in `type`; q8_0 needs rows whose length is a
// multiple of 32 (Error(cannot_meet) naming the tensor otherwise).
std::uint64_t ggml_nbytes(const GgufTensor& tensor);

// Row-major f32 values in `type`: f16 and bf16 rounded to nearest even, q8_0 as
// ggml's quantize_row_q8_0 does it (blocks of 32: one f16 scale max|x| / 127, then
// round(x / scale) half away from zero in int8).
std::vector<std::byte> ggml_encode(std::span<const float> values, GgmlType type);

class GgufWriter {
 public:
  // Writes the header at once (to a temporary name, AtomicFile).
  GgufWriter(const std::filesystem::path& path, const GgufMetadata& metadata, std::vector<GgufTensor> tensors);
  void write(std::span<const std::byte> bytes);  // the next tensor's data, in order
  void commit();                                 // all tensors written: rename into place

 private:
  std::vector<GgufTensor> tensors_;
  std::size_t next_ = 0;
  AtomicFile file_;
};

}  // namespace lorafast
