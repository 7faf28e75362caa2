// What `lorafast finetune` and `pretrain` show and record while they train:
// train_log.csv, the progress display on stderr, Ctrl-C / SIGTERM turned into "stop
// after this step" (a second signal ends the program at once; checkpoints are
// atomic), and the loss-curve PNG drawn from the log by scripts/plot_loss.py.
#pragma once

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "lorafast/train_loop.hpp"
#include "step_csv.hpp"

namespace lorafast::cli {

// OUT/train_log.csv, one row per update:
//   step,loss,lr,grad_norm,val_loss,val_ppl,tokens,tokens_per_s,step_seconds
// (val_loss and val_ppl empty when not validated; loss and val_loss with 17
// significant digits, so runs can be compared exactly).
class TrainLog {
 public:
  // A new log (header only), or with resume_step > 0 the existing one cut to its
  // rows of steps <= resume_step (rewritten atomically; a new one if it is missing).
  TrainLog(const std::filesystem::path& path, std::int64_t resume_step);
  void append(const StepReport& report);  // written and flushed

 private:
  StepCsv csv_;
};

// On a terminal: one line rewritten in place (step/total, bar, loss, tokens/s,
// ETA). Otherwise plain lines: the first and last update, every validation, and
// about every 5% of the run.
class ProgressDisplay {
 public:
  ProgressDisplay(std::int64_t first_step, std::int64_t steps);
  void update(const StepReport& report);
  void note(const std::string& line);  // a line of its own, above the progress line
  void finish();  // ends the terminal line

 private:
  std::int64_t first_step_, steps_, tokens_ = 0;
  double seconds_ = 0;
  bool tty_, open_line_ = false;
};

// While alive, SIGINT and SIGTERM set a flag instead of ending the program.
class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;
  static int signal_received();  // 0, SIGINT or SIGTERM

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

// Runs `python3 script csv png` (/usr/bin/python3, else python3 on PATH; its output
// discarded) and returns true when it wrote the PNG; false when python3 or
// matplotlib is missing.
bool plot_loss_curve(const std::filesystem::path& script, const std::filesystem::path& csv,
                     const std::filesystem::path& png);

}  // namespace lorafast::cli
