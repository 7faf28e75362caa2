#include "text/utf8.hpp"

#include "lorafast/tokenizer.hpp"

namespace lorafast::text {
namespace {

// The allowed range of the second byte after `lead` (Unicode Table 3-7); the
// third and fourth bytes are always 80..BF.
bool second_byte_ok(unsigned char lead, unsigned char b) {
  switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;
    case 0xED: return b >= 0x80 && b <= 0x9F;
    case 0xF0: return b >= 0x90 && b <= 0xBF;
    case 0xF4: return b >= 0x80 && b <= 0x8F;
    default: return b >= 0x80 && b <= 0xBF;
  }
}

// Bytes of the sequence at `pos` that are a prefix of some well-formed sequence
// (at least 1), and whether they complete it.
std::size_t maximal_subpart(std::string_view text, std::size_t pos, bool& complete) {
  const auto lead = static_cast<unsigned char>(text[pos]);
  complete = lead < 0x80;
  if (complete) return 1;
  std::size_t need = 0;
  if (lead >= 0xC2 && lead <= 0xDF) need = 2;
  else if (lead >= 0xE0 && lead <= 0xEF) need = 3;
  else if (lead >= 0xF0 && lead <= 0xF4) need = 4;
  else return 1;
  std::size_t n = 1;
  while (n < need && pos + n < text.size()) {
    const auto b = static_cast<unsigned char>(text[pos + n]);
    if (!(n == 1 ? second_byte_ok(lead, b) : (b >= 0x80 && b <= 0xBF))) break;
    ++n;
  }
  complete = n == need;
  return n;
}

}  // namespace

std::size_t valid_sequence_length(std::string_view text, std::size_t pos) {
  bool complete = false;
  const std::size_t n = maximal_subpart(text, pos, complete);
  return complete ? n : 0;
}

bool is_valid_utf8(std::string_view text) {
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t n = valid_sequence_length(text, pos);
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

char32_t next_code_point(std::string_view text, std::size_t& pos) {
  const auto lead = static_cast<unsigned char>(text[pos]);
  const std::size_t n = sequence_length(lead);
  char32_t c = n == 1 ? lead : n == 2 ? (lead & 0x1F) : n == 3 ? (lead & 0x0F) : (lead & 0x07);
  for (std::size_t i = 1; i < n; ++i) c = (c << 6) | (static_cast<unsigned char>(text[pos + i]) & 0x3F);
  pos += n;
  return c;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

std::size_t count_code_points(std::string_view text) {
  std::size_t n = 0;
  for (const char c : text) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

}  // namespace lorafast::text

namespace lorafast {

std::string replace_invalid_utf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (std::size_t pos = 0; pos < bytes.size();) {
    bool complete = false;
    const std::size_t n = text::maximal_subpart(bytes, pos, complete);
    if (complete) out.append(bytes.substr(pos, n));
    else out += "\xEF\xBF\xBD";
    pos += n;
  }
  return out;
}

}  // namespace lorafast
