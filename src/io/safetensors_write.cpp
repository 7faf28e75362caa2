// safetensors writer: tensors packed back to back (serialize_safetensors: in name
// order; SafetensorsWriter: in the order given, one at a time); the JSON header is
// padded with spaces so the data section starts at a multiple of 8 bytes.
#include <array>
#include <bit>
#include <cstring>

#include <nlohmann/json.hpp>

#include "lorafast/atomic_file.hpp"
#include "lorafast/safetensors.hpp"
#include "lorafast/safetensors_stream.hpp"

namespace lorafast {

static_assert(std::endian::native == std::endian::little, "safetensors data is written little-endian");

std::size_t safetensors_dtype_size(const std::string& dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "F64") return 8;
  LF_CHECK(dtype == "F16" || dtype == "BF16", ErrorKind::bad_input, "safetensors: unsupported dtype ", quote(dtype));
  return 2;
}

std::string safetensors_header(std::vector<SafetensorsEntry>& entries, const Metadata& metadata) {
  using nlohmann::json;
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (auto& e : entries) {
    LF_CHECK(e.name != "__metadata__", ErrorKind::bad_input,
             "safetensors: '__metadata__' is reserved and cannot name a tensor");
    e.begin = offset;
    e.end = offset + static_cast<std::uint64_t>(shape_numel(e.shape)) * safetensors_dtype_size(e.dtype);
    header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", json::array({e.begin, e.end})}};
    offset = e.end;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    throw Error(ErrorKind::bad_input, cat("safetensors: tensor names and metadata must be UTF-8: ", e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

namespace {

std::array<std::byte, 8> length_prefix(std::uint64_t n) {
  std::array<std::byte, 8> out;
  for (std::size_t i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
  return out;
}

}  // namespace

std::vector<std::byte> serialize_safetensors(const TensorMap& tensors, const Metadata& metadata) {
  std::vector<SafetensorsEntry> entries;
  for (const auto& [name, tensor] : tensors) {
    const std::uint64_t need = static_cast<std::uint64_t>(tensor.numel()) * dtype_size(tensor.dtype());
    LF_CHECK(tensor.nbytes() == need, ErrorKind::bad_input, "safetensors: tensor '", name, "' holds ",
             tensor.nbytes(), " bytes but ", dtype_name(tensor.dtype()), ' ', shape_str(tensor.shape()),
             " needs ", need);
    entries.push_back({name, dtype_name(tensor.dtype()), tensor.shape()});
  }
  const std::string text = safetensors_header(entries, metadata);
  const std::uint64_t data_size = entries.empty() ? 0 : entries.back().end;
  std::vector<std::byte> out(8 + text.size() + data_size);
  const auto prefix = length_prefix(text.size());
  std::memcpy(out.data(), prefix.data(), prefix.size());
  std::memcpy(out.data() + 8, text.data(), text.size());
  std::byte* data = out.data() + 8 + text.size();
  for (const auto& [name, tensor] : tensors) {
    if (tensor.nbytes() > 0) std::memcpy(data, tensor.bytes(), tensor.nbytes());
    data += tensor.nbytes();
  }
  return out;
}

SafetensorsWriter::SafetensorsWriter(const std::filesystem::path& path, std::vector<SafetensorsEntry> entries,
                                     const Metadata& metadata)
    : path_(path), entries_(std::move(entries)), file_(path) {
  const std::string text = safetensors_header(entries_, metadata);
  file_.write(length_prefix(text.size()));
  file_.write(std::as_bytes(std::span(text.data(), text.size())));
}

void SafetensorsWriter::write(std::span<const std::byte> bytes) {
  LF_ASSERT(next_ < entries_.size() && bytes.size() == entries_[next_].nbytes());
  file_.write(bytes);
  ++next_;
}

void SafetensorsWriter::commit() {
  LF_ASSERT(next_ == entries_.size());
  file_.commit();
}

void write_safetensors(const std::filesystem::path& path, const TensorMap& tensors, const Metadata& metadata) {
  write_file_atomically(path, serialize_safetensors(tensors, metadata));
}

}  // namespace lorafast
