// lorafast command-line entry point: maps errors to the exit codes of INTERFACE.md.

#include <cstdio>
#include <exception>

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

int run(int argc, char** argv) {
  set_num_threads(0);
  CLI::App app{"lorafast: exact and almost-linear LoRA gradients of attention"};
  app.require_subcommand(1);
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
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::fputs(app.help("", CLI::AppFormatMode::All).c_str(), stdout);
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "lorafast: error: %s (see --help)\n", one_line(e.what()).c_str());
    return 2;
  } catch (const Error& e) {
    const auto has_flag = [&app](const std::string& flag) {
      for (const CLI::App* command : app.get_subcommands())
        if (command->get_option_no_throw(flag) != nullptr) return true;
      return false;
    };
    std::fprintf(stderr, "lorafast: error: %s\n", in_flag_terms(e.what(), has_flag).c_str());
    return exit_code(e.kind());
  }
  return command_exit_status;
}

}  // namespace
}  // namespace lorafast::cli

int main(int argc, char** argv) {
  lorafast::cli::reexec_with_short_spin(argv);
  try {
    return lorafast::cli::run(argc, argv);
  } catch (const std::exception& e) {  // not a lorafast::Error (e.g. std::bad_alloc): no file to blame
    std::fprintf(stderr, "lorafast: error: %s\n", lorafast::one_line(e.what()).c_str());
    return 3;
  }
}
