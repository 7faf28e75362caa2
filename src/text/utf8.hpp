// UTF-8 for the tokenizer: validation with Python's replacement of ill-formed
// bytes, and stepping through code points of text already known to be valid.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace lorafast::text {

// Length of the well-formed UTF-8 sequence at `text[pos]`, 0 when ill-formed there.
std::size_t valid_sequence_length(std::string_view text, std::size_t pos);

bool is_valid_utf8(std::string_view text);

// Bytes of the code point whose (valid) UTF-8 encoding starts with `lead`.
inline std::size_t sequence_length(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

// The code point at `text[pos]` of valid UTF-8; advances `pos` past it.
char32_t next_code_point(std::string_view text, std::size_t& pos);

void append_utf8(std::string& out, char32_t c);

// Number of code points in valid UTF-8.
std::size_t count_code_points(std::string_view text);

}  // namespace lorafast::text
