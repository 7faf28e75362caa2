// `lorafast grad`: placeholder until the grad command lands.
#include "commands.hpp"

namespace lorafast::cli {
void add_grad_command(CLI::App& app) { app.add_subcommand("grad", "One forward + backward of LoRA attention"); }
}  // namespace lorafast::cli
