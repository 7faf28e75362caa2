// A CSV file of a training run whose rows start with the update step: train_log.csv,
// attention_plan.csv. On --resume it is cut back to the checkpoint's step, so the
// file always describes the run the checkpoint continues.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>

namespace lorafast::cli {

class StepCsv {
 public:
  // A new file holding `header` (one line with its '\n'); with resume_step > 0 the
  // existing file's rows of steps <= resume_step that `complete` accepts (a row cut
  // short by a crash is dropped), under `header`, rewritten atomically (a new file if
  // it is missing).
  StepCsv(const std::filesystem::path& path, const std::string& header, std::int64_t resume_step,
          const std::function<bool(const std::string& row)>& complete);
  ~StepCsv();
  StepCsv(const StepCsv&) = delete;
  StepCsv& operator=(const StepCsv&) = delete;

  void append(const std::string& rows);  // written and flushed; Error(bad_input) if it fails

 private:
  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
};

}  // namespace lorafast::cli
