#include "flag_terms.hpp"

#include <algorithm>

namespace lorafast::cli {

std::string in_flag_terms(const std::string& message, const std::function<bool(const std::string&)>& has_flag) {
  std::string out;
  std::size_t at = 0;
  while (at < message.size()) {
    const std::size_t open = message.find('`', at), close = open == std::string::npos ? open : message.find('`', open + 1);
    if (close == std::string::npos) break;
    std::string name = message.substr(open + 1, close - open - 1);
    const bool identifier = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    });
    out.append(message, at, open - at);
    if (!identifier) {  // not a parameter name: keep the text as it is
      out.append(message, open, close + 1 - open);
    } else {
      std::string flag = "--" + name;
      std::replace(flag.begin(), flag.end(), '_', '-');
      out += has_flag(flag) ? flag : name;
    }
    at = close + 1;
  }
  return out + message.substr(std::min(at, message.size()));
}

}  // namespace lorafast::cli
