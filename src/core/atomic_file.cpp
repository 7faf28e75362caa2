// Atomic output: write a temporary file (or directory) beside the target, fsync it,
// rename it over the target, and fsync the parent directory. Any failure removes
// the temporary file or directory.
#include "lorafast/atomic_file.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
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

// Makes a rename durable; best effort, as some file systems refuse fsync on directories.
void sync_parent(const fs::path& target) {
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

AtomicFile::AtomicFile(const fs::path& target) : target_(target), path_(temporary_name(target)) {
  LF_CHECK(target.has_filename(), ErrorKind::bad_input, target.string(), ": cannot write: not a file name");
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd_ < 0) fail("cannot create a temporary file in its directory");
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!renamed_) ::unlink(path_.c_str());
}

void AtomicFile::write(std::span<const std::byte> bytes) {
  const std::byte* data = bytes.data();
  std::size_t size = bytes.size();
  while (size > 0) {
    const ssize_t written = ::write(fd_, data, size);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) fail("write failed");
    data += written;
    size -= static_cast<std::size_t>(written);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) fail("fsync failed");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("close failed");
  if (::rename(path_.c_str(), target_.c_str()) != 0) fail("cannot rename the temporary file over it");
  renamed_ = true;
  sync_parent(target_);
}

void AtomicFile::fail(const char* what) const {
  const int code = errno;
  throw Error(ErrorKind::bad_input, cat(target_.string(), ": cannot write: ", what, ": ", std::strerror(code)));
}

void write_file_atomically(const fs::path& path, std::span<const std::byte> bytes) {
  AtomicFile file(path);
  file.write(bytes);
  file.commit();
}

void write_file_atomically(const fs::path& path, std::string_view text) {
  write_file_atomically(path, std::as_bytes(std::span(text.data(), text.size())));
}

AtomicDirectory::AtomicDirectory(const fs::path& target, bool replace)
    : target_(fs::absolute(target).lexically_normal()), replace_(replace) {
  if (!target_.has_filename()) target_ = target_.parent_path();  // "out/" names "out"
  std::error_code ec;
  const bool exists = fs::exists(fs::symlink_status(target_, ec));
  LF_CHECK(!exists || replace, ErrorKind::usage, target.string(), ": already exists (--force replaces it)");
  LF_CHECK(!exists || fs::is_directory(target_), ErrorKind::usage, target.string(),
           ": exists and is not a directory; not replaced");
  path_ = temporary_name(target_);
  if (::mkdir(path_.c_str(), 0777) != 0) {
    const int code = errno;
    throw Error(ErrorKind::bad_input,
                cat(target.string(), ": cannot create a temporary directory beside it: ", std::strerror(code)));
  }
}

AtomicDirectory::~AtomicDirectory() {
  std::error_code ec;
  if (!committed_) fs::remove_all(path_, ec);
}

void AtomicDirectory::commit() {
  const auto fail = [&](const char* what) {
    const int code = errno;
    throw Error(ErrorKind::bad_input, cat(target_.string(), ": cannot write: ", what, ": ", std::strerror(code)));
  };
  // The files inside were fsynced as they were committed; the directory entries too.
  if (const int fd = ::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  std::error_code ec;
  if (replace_ && fs::exists(fs::symlink_status(target_, ec))) {
    // One atomic step: readers see the old directory or the new one, never neither.
    if (::renameat2(AT_FDCWD, path_.c_str(), AT_FDCWD, target_.c_str(), RENAME_EXCHANGE) != 0)
      fail("cannot exchange it with the new directory");
    committed_ = true;
    fs::remove_all(path_, ec);  // now the old contents
  } else {
    if (::renameat2(AT_FDCWD, path_.c_str(), AT_FDCWD, target_.c_str(), RENAME_NOREPLACE) != 0)
      fail("cannot rename the temporary directory to it");
    committed_ = true;
  }
  sync_parent(target_);
}

}  // namespace lorafast
