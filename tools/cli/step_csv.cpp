#include "step_csv.hpp"

#include <fstream>

#include "lorafast/atomic_file.hpp"
#include "lorafast/error.hpp"

namespace lorafast::cli {
namespace {

std::string kept_rows(const std::filesystem::path& path, const std::string& header, std::int64_t step,
                      const std::function<bool(const std::string&)>& complete) {
  std::ifstream in(path);
  std::string line, kept = header;
  std::getline(in, line);  // the old header
  while (std::getline(in, line)) {
    std::size_t used = 0;
    long long row_step = 0;
    try {
      row_step = std::stoll(line, &used);
    } catch (const std::exception&) {
      continue;
    }
    if (used > 0 && row_step <= step && complete(line)) kept += line + "\n";
  }
  return kept;
}

}  // namespace

StepCsv::StepCsv(const std::filesystem::path& path, const std::string& header, std::int64_t resume_step,
                 const std::function<bool(const std::string&)>& complete)
    : path_(path) {
  write_file_atomically(path, resume_step > 0 ? kept_rows(path, header, resume_step, complete) : header);
  file_ = std::fopen(path.c_str(), "ab");
  LF_CHECK(file_ != nullptr, ErrorKind::bad_input, path.string(), ": cannot open for appending");
}

StepCsv::~StepCsv() {
  if (file_ != nullptr) std::fclose(file_);
}

void StepCsv::append(const std::string& rows) {
  LF_CHECK(std::fputs(rows.c_str(), file_) >= 0 && std::fflush(file_) == 0, ErrorKind::bad_input, path_.string(),
           ": cannot write");
}

}  // namespace lorafast::cli
