// safetensors files one tensor at a time, for models larger than memory should hold
// twice (lorafast merge): the reader checks the header exactly as read_safetensors
// does and reads each tensor when asked; the writer computes the header from the
// tensors' names, dtypes and shapes, then takes their bytes one by one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "lorafast/atomic_file.hpp"
#include "lorafast/safetensors.hpp"

namespace lorafast {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // as stored: "F32", "F64", "F16", "BF16"
  Shape shape;
  std::uint64_t begin = 0, end = 0;  // offsets in the data section
  std::uint64_t nbytes() const { return end - begin; }
};

// Bytes per element of a safetensors dtype lorafast reads or writes (F32, F64, F16, BF16).
std::size_t safetensors_dtype_size(const std::string& dtype);

class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::filesystem::path& path);  // reads and checks the header only

  const std::filesystem::path& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const Metadata& metadata() const { return metadata_; }
  std::vector<std::byte> read_bytes(const SafetensorsEntry& entry) const;  // as stored
  void read_into(const SafetensorsEntry& entry, std::span<std::byte> out) const;  // as stored; entry.nbytes() bytes
  Tensor read(const SafetensorsEntry& entry) const;  // loaded as read_safetensors loads it

 private:
  std::filesystem::path path_;
  std::uint64_t data_start_ = 0;
  std::vector<SafetensorsEntry> entries_;
  Metadata metadata_;
};

// Writes `entries` (their offsets are assigned here, back to back in the given
// order) atomically: write() takes each tensor's bytes in order, commit() checks
// that all came and renames the file into place.
class SafetensorsWriter {
 public:
  SafetensorsWriter(const std::filesystem::path& path, std::vector<SafetensorsEntry> entries,
                    const Metadata& metadata = {});
  void write(std::span<const std::byte> bytes);
  void commit();

 private:
  std::filesystem::path path_;
  std::vector<SafetensorsEntry> entries_;
  std::size_t next_ = 0;
  AtomicFile file_;
};

// The JSON header of a file holding `entries` back to back in this order, padded
// with spaces to a multiple of 8 bytes; sets each entry's offsets.
std::string safetensors_header(std::vector<SafetensorsEntry>& entries, const Metadata& metadata);

}  // namespace lorafast
