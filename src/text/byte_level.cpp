#include "text/byte_level.hpp"

#include <array>

#include "text/utf8.hpp"

namespace lorafast::text {
namespace {

bool shown_as_itself(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

struct Tables {
  std::array<char32_t, 256> char_of_byte{};
  std::array<std::string, 256> utf8_of_byte;
  std::array<int, 0x144> byte_of{};  // indexed by code point < U+0144
  Tables() {
    byte_of.fill(-1);
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      char_of_byte[b] = shown_as_itself(b) ? static_cast<char32_t>(b) : next++;
      append_utf8(utf8_of_byte[b], char_of_byte[b]);
      byte_of[char_of_byte[b]] = b;
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

void append_byte_level(std::string& out, std::string_view bytes) {
  const Tables& t = tables();
  for (const char c : bytes) out += t.utf8_of_byte[static_cast<unsigned char>(c)];
}

int byte_of_char(char32_t c) { return c < tables().byte_of.size() ? tables().byte_of[c] : -1; }

}  // namespace lorafast::text
