#include "flag_terms.hpp"

#include <utility>

namespace lorafast::cli {

std::string in_flag_terms(std::string message) {
  // The phrases the attention layer's messages use (src/phase/dispatch.cpp,
  // certificate.cpp), each with its flag spelling.
  static const std::pair<const char*, const char*> phrases[] = {
      {"method exact can", "--method exact can"},
      {": method fast ", ": --method fast "},
      {": method chained ", ": --method chained "},
      {"cannot certify eps ", "cannot certify --eps "},
      {"with forced degree ", "with --degree "},
      {"eps must be positive", "--eps must be positive"},
  };
  for (const auto& [library, flag] : phrases)
    for (auto at = message.find(library); at != std::string::npos; at = message.find(library, at + 1)) {
      if (at >= 2 && message.compare(at - 2, 2, "--") == 0) continue;  // already a flag
      message.replace(at, std::char_traits<char>::length(library), flag);
      at += std::char_traits<char>::length(flag) - 1;
    }
  return message;
}

}  // namespace lorafast::cli
