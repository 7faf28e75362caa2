// The library names its parameters as the API does (method, eps, forced degree);
// on the command line they are flags. in_flag_terms rewrites a library message so
// that it names the flag the user typed.
#pragma once

#include <string>

namespace lorafast::cli {

std::string in_flag_terms(std::string message);

}  // namespace lorafast::cli
