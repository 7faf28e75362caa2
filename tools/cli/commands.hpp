// Each subcommand registers its flags on the app and its action as the subcommand's
// callback; actions throw lorafast::Error, which main() maps to an exit code.
#pragma once

#include <CLI/CLI.hpp>

namespace lorafast::cli {

void add_grad_command(CLI::App& app);
void add_case_command(CLI::App& app);

// --threads, accepted by every command (default: all cores).
void add_threads_option(CLI::App& command);

}  // namespace lorafast::cli
