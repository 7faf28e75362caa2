// GPT-2's byte-level alphabet: each byte is shown as one printable code point
// (printable Latin-1 bytes as themselves, the other 68 as U+0100..U+0143), so any
// byte string is a string of "characters" a BPE vocabulary can hold.
#pragma once

#include <string>
#include <string_view>

namespace lorafast::text {

// Appends the byte-level characters of `bytes` (UTF-8, 1 or 2 bytes each) to `out`.
void append_byte_level(std::string& out, std::string_view bytes);
inline std::string bytes_to_unicode(std::string_view bytes) {
  std::string out;
  append_byte_level(out, bytes);
  return out;
}

// The byte a byte-level character stands for, or -1 when `c` is not one.
int byte_of_char(char32_t c);

}  // namespace lorafast::text
