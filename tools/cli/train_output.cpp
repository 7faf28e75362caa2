#include "train_output.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <string>

namespace lorafast::cli {
namespace {

constexpr const char* csv_header = "step,loss,lr,grad_norm,val_loss,val_ppl,tokens,tokens_per_s,step_seconds\n";

volatile std::sig_atomic_t received_signal = 0;

extern "C" void on_signal(int signo) {
  received_signal = signo;
  constexpr char message[] = "\nlorafast: stopping after the current step to save a checkpoint (again to quit now)\n";
  [[maybe_unused]] const auto written = ::write(STDERR_FILENO, message, sizeof message - 1);
}

std::string duration(double seconds) {
  const auto s = static_cast<long long>(std::llround(std::max(0.0, seconds)));
  return s >= 3600 ? cat(s / 3600, "h", (s / 60) % 60 < 10 ? "0" : "", (s / 60) % 60, "m")
         : s >= 60 ? cat(s / 60, "m", s % 60 < 10 ? "0" : "", s % 60, "s")
                   : cat(s, "s");
}

}  // namespace

// A complete row has all 9 columns.
TrainLog::TrainLog(const std::filesystem::path& path, std::int64_t resume_step)
    : csv_(path, csv_header, resume_step,
           [](const std::string& row) { return std::count(row.begin(), row.end(), ',') == 8; }) {}

void TrainLog::append(const StepReport& r) {
  const double tokens_per_s = r.seconds > 0 ? static_cast<double>(r.tokens) / r.seconds : 0.0;
  char row[512];
  if (r.val_loss)
    std::snprintf(row, sizeof row, "%lld,%.17g,%.9g,%.9g,%.17g,%.9g,%lld,%.6g,%.6g\n", static_cast<long long>(r.step),
                  r.loss, r.lr, r.grad_norm, *r.val_loss, std::exp(*r.val_loss), static_cast<long long>(r.tokens),
                  tokens_per_s, r.seconds);
  else
    std::snprintf(row, sizeof row, "%lld,%.17g,%.9g,%.9g,,,%lld,%.6g,%.6g\n", static_cast<long long>(r.step), r.loss,
                  r.lr, r.grad_norm, static_cast<long long>(r.tokens), tokens_per_s, r.seconds);
  csv_.append(row);
}

ProgressDisplay::ProgressDisplay(std::int64_t first_step, std::int64_t steps)
    : first_step_(first_step), steps_(steps), tty_(::isatty(STDERR_FILENO) != 0) {}

void ProgressDisplay::update(const StepReport& r) {
  tokens_ += r.tokens;
  seconds_ += r.seconds;
  const double rate = seconds_ > 0 ? static_cast<double>(tokens_) / seconds_ : 0.0;
  const double per_step = seconds_ / static_cast<double>(r.step - first_step_ + 1);
  const std::string eta = duration(per_step * static_cast<double>(steps_ - r.step));
  char val[64] = "";
  if (r.val_loss) std::snprintf(val, sizeof val, " | val %.4f", *r.val_loss);
  if (tty_) {
    constexpr int width = 20;
    const int filled = static_cast<int>(width * r.step / std::max<std::int64_t>(steps_, 1));
    const std::string bar = std::string(static_cast<std::size_t>(filled), '#') + std::string(static_cast<std::size_t>(width - filled), '.');
    std::fprintf(stderr, "\r\033[Kstep %lld/%lld [%s] loss %.4f%s | %.0f tok/s | ETA %s",
                 static_cast<long long>(r.step), static_cast<long long>(steps_), bar.c_str(), r.loss, val,
                 rate, eta.c_str());
    open_line_ = true;
    if (r.val_loss) {  // keep validation results on screen
      std::fputc('\n', stderr);
      open_line_ = false;
    }
  } else {
    const std::int64_t every = std::max<std::int64_t>(1, steps_ / 20);
    if (r.step == first_step_ || r.step == steps_ || r.val_loss || r.step % every == 0)
      std::fprintf(stderr, "step %lld/%lld loss %.4f lr %.3g%s | %.0f tok/s | ETA %s\n",
                   static_cast<long long>(r.step), static_cast<long long>(steps_), r.loss, r.lr, val, rate,
                   eta.c_str());
  }
  std::fflush(stderr);
}

void ProgressDisplay::note(const std::string& line) {
  // On a terminal the line replaces the open progress line, which the next update redraws.
  std::fprintf(stderr, "%s%s\n", tty_ && open_line_ ? "\r\033[K" : "", line.c_str());
  open_line_ = false;
  std::fflush(stderr);
}

void ProgressDisplay::finish() {
  if (open_line_) std::fputc('\n', stderr);
  open_line_ = false;
}

InterruptGuard::InterruptGuard() {
  received_signal = 0;
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESETHAND;  // the second signal takes the default action
  sigaction(SIGINT, &action, &old_int_);
  sigaction(SIGTERM, &action, &old_term_);
}

InterruptGuard::~InterruptGuard() {
  sigaction(SIGINT, &old_int_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
}

int InterruptGuard::signal_received() { return received_signal; }

bool plot_loss_curve(const std::filesystem::path& script, const std::filesystem::path& csv,
                     const std::filesystem::path& png) {
  std::error_code ec;
  std::filesystem::remove(png, ec);  // so that an old plot is never taken for the new one
  // Debian's interpreter first: python3-matplotlib installs there, whatever PATH holds.
  const bool system_python = ::access("/usr/bin/python3", X_OK) == 0;
  std::string args[] = {system_python ? "/usr/bin/python3" : "python3", script.string(), csv.string(), png.string()};
  char* argv[] = {args[0].data(), args[1].data(), args[2].data(), args[3].data(), nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int spawned = posix_spawnp(&pid, argv[0], &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return false;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 && std::filesystem::is_regular_file(png, ec);
}

}  // namespace lorafast::cli
