// Atomic file output: write a temporary file beside the target, fsync it, rename it
// over the target, and fsync the directory. Any failure removes the temporary file.
#include "lorafast/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "lorafast/error.hpp"

namespace lorafast {
namespace {

namespace fs = std::filesystem;

fs::path temporary_name(const fs::path& target) {
  std::random_device device;
  const auto random = (static_cast<std::uint64_t>(device()) << 32) | device();
  return target.parent_path() / cat('.', target.filename().string(), ".tmp-", ::getpid(), '-', std::hex, random);
}

// Owns the temporary file until it is renamed; removes it on every failure path.
class TemporaryFile {
 public:
  TemporaryFile(const fs::path& target) : target_(target), path_(temporary_name(target)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0) fail("cannot create a temporary file in its directory");
  }
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  ~TemporaryFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!renamed_) ::unlink(path_.c_str());
  }

  void write_all(const std::byte* data, std::size_t size) {
    while (size > 0) {
      const ssize_t written = ::write(fd_, data, size);
      if (written < 0 && errno == EINTR) continue;
      if (written <= 0) fail("write failed");
      data += written;
      size -= static_cast<std::size_t>(written);
    }
  }

  void commit() {
    if (::fsync(fd_) != 0) fail("fsync failed");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("close failed");
    if (::rename(path_.c_str(), target_.c_str()) != 0) fail("cannot rename the temporary file over it");
    renamed_ = true;
    sync_directory();
  }

 private:
  [[noreturn]] void fail(const char* what) const {
    const int code = errno;
    throw Error(ErrorKind::bad_input, cat(target_.string(), ": cannot write: ", what, ": ", std::strerror(code)));
  }

  // Makes the rename durable; best effort, as some file systems refuse fsync on directories.
  void sync_directory() const {
    const fs::path dir = target_.parent_path().empty() ? fs::path(".") : target_.parent_path();
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
  }

  fs::path target_;
  fs::path path_;
  int fd_ = -1;
  bool renamed_ = false;
};

}  // namespace

void write_file_atomically(const fs::path& path, std::span<const std::byte> bytes) {
  LF_CHECK(path.has_filename(), ErrorKind::bad_input, path.string(), ": cannot write: not a file name");
  TemporaryFile file(path);
  file.write_all(bytes.data(), bytes.size());
  file.commit();
}

void write_file_atomically(const fs::path& path, std::string_view text) {
  write_file_atomically(path, std::as_bytes(std::span(text.data(), text.size())));
}

}  // namespace lorafast
