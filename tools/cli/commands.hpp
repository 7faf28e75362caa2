// Each subcommand registers its flags on the app and its action as the subcommand's
// callback; actions throw lorafast::Error, which main() maps to an exit code.
#pragma once

#include <CLI/CLI.hpp>

#include "lorafast/distributed.hpp"

namespace lorafast::cli {

void add_grad_command(CLI::App& app);
void add_case_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_phase_command(CLI::App& app);
void add_model_grad_command(CLI::App& app);  // hidden development/test command
void add_finetune_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_pretrain_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_template_command(CLI::App& app);
void add_merge_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_prepare_command(CLI::App& app);

// The processes of this run (mpirun -np K; one without): only finetune shares its
// work between several, the other commands refuse to run as one of them.
extern Processes processes;

// The exit status of a command that completed without an error but must not
// report success (an interrupted finetune: 128 + the signal); 0 otherwise.
extern int command_exit_status;
void add_calibrate_command(CLI::App& app);

// --threads, accepted by every command (default: all cores, at most max_threads).
constexpr int max_threads = 1024;
void add_threads_option(CLI::App& command);

// Number checks with one readable message (CLI11's own print the whole double range).
extern const CLI::Validator positive;
extern const CLI::Validator non_negative;

}  // namespace lorafast::cli
