// --dtype bf16 on the command line: what a command says when the CPU cannot multiply
// in bf16 (INTERFACE.md "Precision").
#pragma once

#include <string>

namespace lorafast::cli {

// For dtype "bf16" without bf16 arithmetic (the CPU lacks it, or it is turned off): one note on stderr (once per
// process) that the bf16 products run in f32 here.
void note_bf16_fallback(const std::string& dtype);

}  // namespace lorafast::cli
