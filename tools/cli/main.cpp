// lorafast command-line entry point: maps errors to the exit codes of INTERFACE.md.

#include <chrono>
#include <cstdio>
#include <exception>
#include <string>
#include <thread>

#include "commands.hpp"
#include "flag_terms.hpp"
#include "lorafast/error.hpp"
#include "lorafast/threads.hpp"
#include "omp_wait_policy.hpp"

namespace lorafast::cli {

namespace {
CLI::Validator number_check(bool (*ok)(double), const std::string& requirement) {
  return CLI::Validator(
      [ok, requirement](std::string& text) {
        try {
          std::size_t used = 0;
          const double value = std::stod(text, &used);
          if (used == text.size() && ok(value)) return std::string();
        } catch (const std::exception&) {
        }
        return "'" + text + "' is not " + requirement;
      },
      requirement);
}
}  // namespace

int command_exit_status = 0;
Processes processes;

const CLI::Validator positive = number_check([](double v) { return v > 0; }, "a positive number");
const CLI::Validator non_negative = number_check([](double v) { return v >= 0; }, "a non-negative number");

void add_threads_option(CLI::App& command) {
  command.add_option_function<int>("--threads", [](int t) { set_num_threads(t); },
                                   "Worker threads (default: all cores)")
      ->check(positive)
      ->check(CLI::Range(1, max_threads, "at most " + std::to_string(max_threads)));
}

namespace {

int exit_code(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::usage: return 2;
    case ErrorKind::bad_input: return 3;
    case ErrorKind::cannot_meet: return 4;
  }
  return 3;
}

// Prints the error line and returns `status`. As one of several processes, the
// line names the rank and the whole job ends: the other ranks would wait for this
// one forever.
int fail(int status, const std::string& message) {
  if (processes.size == 1) {
    std::fprintf(stderr, "lorafast: error: %s\n", message.c_str());
    return status;
  }
  // An error in the flags or the data usually strikes every rank alike: rank 0's
  // abort ends the others during this pause, so the job prints one line, not K.
  if (!processes.root()) std::this_thread::sleep_for(std::chrono::seconds(1));
  std::fprintf(stderr, "lorafast: error: rank %d: %s\n", processes.rank, message.c_str());
  std::fflush(stderr);
  abort_processes(status);
}

// Every command but finetune refuses to run as one of several processes.
void refuse_several_processes(CLI::App& app) {
  for (CLI::App* command : app.get_subcommands({}))
    if (command->get_name() != "finetune")
      command->preparse_callback([name = command->get_name()](std::size_t) {
        LF_CHECK(processes.size == 1, ErrorKind::usage, name, " runs in one process, not as one of ", processes.size,
                 " (only finetune runs on several: mpirun -np K lorafast finetune ...)");
      });
}

int run(int argc, char** argv) {
  set_num_threads(0);
  CLI::App app{"lorafast: exact and almost-linear LoRA gradients of attention"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("lorafast " LORAFAST_VERSION ", several processes over MPI: ") +
                                        (built_with_mpi() ? "yes" : "no (a build without MPI)"));
  add_grad_command(app);
  add_bench_command(app);
  add_case_command(app);
  add_phase_command(app);
  add_model_grad_command(app);
  add_pretrain_command(app);
  add_finetune_command(app);
  add_eval_command(app);
  add_generate_command(app);
  add_tokenize_command(app);
  add_template_command(app);
  add_merge_command(app);
  add_export_command(app);
  add_prepare_command(app);
  add_calibrate_command(app);
  refuse_several_processes(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForVersion& e) {
    std::printf("%s\n", e.what());
    return 0;
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::fputs(app.help("", CLI::AppFormatMode::All).c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    return fail(2, one_line(e.what()) + " (see --help)");
  } catch (const Error& e) {
    const auto has_flag = [&app](const std::string& flag) {
      for (const CLI::App* command : app.get_subcommands())
        if (command->get_option_no_throw(flag) != nullptr) return true;
      return false;
    };
    return fail(exit_code(e.kind()), in_flag_terms(e.what(), has_flag));
  }
  return command_exit_status;
}

// `processes` started (under mpirun, MPI initialized; rank 0 alone prints), the command run.
int start_and_run(int argc, char** argv) {
  try {
    processes = start_processes(argc, argv);
  } catch (const Error& e) {  // mpirun started a build without MPI
    return fail(exit_code(e.kind()), e.what());
  }
  if (!processes.root() && std::freopen("/dev/null", "w", stdout) == nullptr)
    return fail(3, "/dev/null: cannot open it for the output of a rank other than 0");
  const int status = run(argc, argv);
  finish_processes();
  return status;
}

}  // namespace
}  // namespace lorafast::cli

int main(int argc, char** argv) {
  lorafast::cli::reexec_with_short_spin(argv);
  try {
    return lorafast::cli::start_and_run(argc, argv);
  } catch (const std::exception& e) {  // not a lorafast::Error (e.g. std::bad_alloc): no file to blame
    return lorafast::cli::fail(3, lorafast::one_line(e.what()));
  }
}
