// Errors: LF_CHECK throws lorafast::Error for anything a caller or a file can get
// wrong; LF_ASSERT aborts with file:line on a broken internal invariant.
// The library never prints and never exits; the CLI maps ErrorKind to exit codes.
// Every message is one line of bounded length (one_line), whatever a file put in it.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace lorafast {

enum class ErrorKind {
  usage,        // a bad option value (CLI exit 2)
  bad_input,    // unreadable, corrupt or inconsistent input (CLI exit 3)
  cannot_meet,  // a valid request that cannot be satisfied (CLI exit 4)
};

constexpr std::size_t max_message_bytes = 1000;

// `text` made safe for one terminal line: control characters, C1 controls and bytes
// that are not UTF-8 become \xNN escapes, and at most `max_bytes` bytes are kept
// (then "..." is appended).
std::string one_line(std::string_view text, std::size_t max_bytes = max_message_bytes);

// A name or string taken from a file, for a message: one_line of at most 80 bytes, in quotes.
std::string quote(std::string_view text);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(one_line(message)), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// Concatenates any streamable values into one message.
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

[[noreturn]] void assertion_failed(const char* condition, const char* file, int line);

}  // namespace lorafast

#define LF_CHECK(condition, kind, ...)                                           \
  do {                                                                           \
    if (!(condition)) throw ::lorafast::Error((kind), ::lorafast::cat(__VA_ARGS__)); \
  } while (0)

#define LF_ASSERT(condition)                                                    \
  do {                                                                          \
    if (!(condition)) ::lorafast::assertion_failed(#condition, __FILE__, __LINE__); \
  } while (0)
