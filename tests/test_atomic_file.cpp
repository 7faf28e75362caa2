// Atomic file output: failures create nothing, and an overwrite replaces the old file whole.
#include <gtest/gtest.h>

#include <fstream>

#include "lorafast/atomic_file.hpp"
#include "lorafast/error.hpp"
#include "support/scratch_files.hpp"

namespace lorafast {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) { return testing::fresh_dir("atomic", name); }

using testing::slurp;

std::size_t entries_in(const fs::path& dir) {
  return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

std::string write_error(const fs::path& path) {
  try {
    write_file_atomically(path, std::string_view("payload"));
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::bad_input);
    return e.what();
  }
  ADD_FAILURE() << "wrote " << path;
  return {};
}

TEST(AtomicFile, MissingDirectoryThrowsAndCreatesNothing) {
  const fs::path dir = fresh_dir("missing");
  const fs::path target = dir / "no-such-dir" / "out.bin";
  const std::string message = write_error(target);
  EXPECT_NE(message.find(target.string()), std::string::npos) << message;
  EXPECT_NE(message.find("No such file or directory"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(dir / "no-such-dir"));
  EXPECT_EQ(entries_in(dir), 0u);
  fs::remove_all(dir);
}

TEST(AtomicFile, OverwriteReplacesTheWholeFile) {
  const fs::path dir = fresh_dir("overwrite");
  const fs::path target = dir / "out.txt";
  write_file_atomically(target, std::string(10000, 'x'));
  EXPECT_EQ(slurp(target), std::string(10000, 'x'));
  write_file_atomically(target, std::string_view("short"));
  EXPECT_EQ(slurp(target), "short");
  EXPECT_EQ(entries_in(dir), 1u);  // no temporary file left behind
  fs::remove_all(dir);
}

TEST(AtomicFile, TargetThatIsADirectoryThrowsAndLeavesNoTemporary) {
  const fs::path dir = fresh_dir("isdir");
  fs::create_directory(dir / "sub");
  fs::create_directory(dir / "sub" / "inner");
  const std::string message = write_error(dir / "sub");
  EXPECT_NE(message.find((dir / "sub").string()), std::string::npos) << message;
  EXPECT_TRUE(fs::is_directory(dir / "sub" / "inner"));
  EXPECT_EQ(entries_in(dir), 1u);
  fs::remove_all(dir);
}

TEST(AtomicFile, UnwritableDirectoryThrowsAndKeepsTheOldFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  const fs::path dir = fresh_dir("readonly");
  const fs::path target = dir / "out.txt";
  write_file_atomically(target, std::string_view("old"));
  fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec);
  const std::string message = write_error(target);
  fs::permissions(dir, fs::perms::owner_all);
  EXPECT_NE(message.find(target.string()), std::string::npos) << message;
  EXPECT_EQ(slurp(target), "old");
  EXPECT_EQ(entries_in(dir), 1u);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace lorafast
