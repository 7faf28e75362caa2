// Files for tests: a fresh directory per test and process (ctest runs tests in
// parallel processes), and a file's bytes.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "lorafast/error.hpp"

namespace lorafast::testing {

// <tmp>/lorafast-<prefix>-<name>-<pid>, emptied.
inline std::filesystem::path fresh_dir(const std::string& prefix, const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / cat("lorafast-", prefix, '-', name, '-', ::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace lorafast::testing
