// Atomic file output: the bytes go to a temporary file beside the target, which is
// renamed over it only once complete, so a failure never leaves a partial file.
// A directory of files (a merged model) is built the same way: under a temporary
// name beside the target, renamed to it once every file is written.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string_view>

namespace lorafast {

void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes);
void write_file_atomically(const std::filesystem::path& path, std::string_view text);

// A file written piece by piece (e.g. a safetensors file tensor by tensor) to a
// temporary name; commit() makes it durable and renames it over `target`. Destroyed
// uncommitted, the temporary file is removed. Errors throw Error(bad_input) naming `target`.
class AtomicFile {
 public:
  explicit AtomicFile(const std::filesystem::path& target);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  void write(std::span<const std::byte> bytes);
  void commit();

 private:
  [[noreturn]] void fail(const char* what) const;

  std::filesystem::path target_;
  std::filesystem::path path_;
  int fd_ = -1;
  bool renamed_ = false;
};

// A directory filled under a temporary name beside `target` (path()); commit()
// renames it to `target`, atomically exchanging it with an existing `target` when
// `replace` is set (the old one is then removed). Destroyed uncommitted, the
// temporary directory is removed with its contents. Without `replace` an existing
// `target` is refused with Error(usage) before anything is created.
class AtomicDirectory {
 public:
  AtomicDirectory(const std::filesystem::path& target, bool replace);
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;
  ~AtomicDirectory();

  const std::filesystem::path& path() const { return path_; }
  void commit();

 private:
  std::filesystem::path target_;
  std::filesystem::path path_;
  bool replace_ = false;
  bool committed_ = false;
};

}  // namespace lorafast
