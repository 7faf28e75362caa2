// safetensors writer: tensors in name order, packed back to back; the JSON header is
// padded with spaces so the data section starts at a multiple of 8 bytes.
#include <bit>
#include <cstring>

#include <nlohmann/json.hpp>

#include "lorafast/atomic_file.hpp"
#include "lorafast/safetensors.hpp"

namespace lorafast {

static_assert(std::endian::native == std::endian::little, "safetensors data is written little-endian");

std::vector<std::byte> serialize_safetensors(const TensorMap& tensors, const Metadata& metadata) {
  using nlohmann::json;
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    LF_CHECK(name != "__metadata__", ErrorKind::bad_input,
             "safetensors: '__metadata__' is reserved and cannot name a tensor");
    const std::uint64_t need = static_cast<std::uint64_t>(tensor.numel()) * dtype_size(tensor.dtype());
    LF_CHECK(tensor.nbytes() == need, ErrorKind::bad_input, "safetensors: tensor '", name, "' holds ",
             tensor.nbytes(), " bytes but ", dtype_name(tensor.dtype()), ' ', shape_str(tensor.shape()),
             " needs ", need);
    header[name] = {{"dtype", dtype_name(tensor.dtype())},
                    {"shape", tensor.shape()},
                    {"data_offsets", json::array({offset, offset + need})}};
    offset += need;
  }

  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    throw Error(ErrorKind::bad_input, cat("safetensors: tensor names and metadata must be UTF-8: ", e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  std::vector<std::byte> out(8 + text.size() + offset);
  for (std::size_t i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((text.size() >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, text.data(), text.size());
  std::byte* data = out.data() + 8 + text.size();
  for (const auto& [name, tensor] : tensors) {
    if (tensor.nbytes() > 0) std::memcpy(data, tensor.bytes(), tensor.nbytes());
    data += tensor.nbytes();
  }
  return out;
}

void write_safetensors(const std::filesystem::path& path, const TensorMap& tensors, const Metadata& metadata) {
  write_file_atomically(path, serialize_safetensors(tensors, metadata));
}

}  // namespace lorafast
