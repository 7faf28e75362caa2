// The library names its parameters as the API does, in backticks (`seq_len`,
// `method`); on the command line they are flags. in_flag_terms rewrites each such
// name whose flag the command has (`seq_len` -> --seq-len) and drops the backticks
// of the others, so that a message names what the user typed.
#pragma once

#include <functional>
#include <string>

namespace lorafast::cli {

std::string in_flag_terms(const std::string& message, const std::function<bool(const std::string&)>& has_flag);

}  // namespace lorafast::cli
