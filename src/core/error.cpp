#include "lorafast/error.hpp"

#include <cstdio>
#include <cstdlib>

namespace lorafast {
namespace {

// Length of the well-formed UTF-8 sequence at the start of `s` (not overlong, not a
// surrogate, at most U+10FFFF), or 0.
std::size_t utf8_sequence_length(std::string_view s) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // the allowed range of the second byte
  if (b0 >= 0xc2 && b0 <= 0xdf) n = 2;
  else if (b0 == 0xe0) n = 3, lo = 0xa0;
  else if (b0 == 0xed) n = 3, hi = 0x9f;
  else if (b0 >= 0xe1 && b0 <= 0xef) n = 3;
  else if (b0 == 0xf0) n = 4, lo = 0x90;
  else if (b0 >= 0xf1 && b0 <= 0xf3) n = 4;
  else if (b0 == 0xf4) n = 4, hi = 0x8f;
  if (n == 0 || s.size() < n || byte(1) < lo || byte(1) > hi) return 0;
  for (std::size_t i = 2; i < n; ++i)
    if (byte(i) < 0x80 || byte(i) > 0xbf) return 0;
  return n;
}

void append_escape(std::string& out, unsigned char c) {
  char buf[5];
  std::snprintf(buf, sizeof buf, "\\x%02x", c);
  out += buf;
}

}  // namespace

std::string one_line(std::string_view text, std::size_t max_bytes) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size() && out.size() < max_bytes) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    const std::size_t n = c >= 0x80 ? utf8_sequence_length(text.substr(i)) : 0;
    // U+0080..U+009F (C2 80..C2 9F) are C1 controls, which terminals obey as escapes.
    const bool c1_control = n == 2 && c == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0;
    if (n > 0 && !c1_control) {
      out.append(text.substr(i, n));
      i += n;
    } else {
      append_escape(out, c);
      ++i;
    }
  }
  if (i < text.size()) out += "...";
  return out;
}

std::string quote(std::string_view text) {
  std::string out(1, '\'');
  out += one_line(text, 80);
  out += '\'';
  return out;
}

void assertion_failed(const char* condition, const char* file, int line) {
  std::fprintf(stderr, "lorafast: internal error: %s failed at %s:%d\n", condition, file, line);
  std::abort();
}

}  // namespace lorafast
