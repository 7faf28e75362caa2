#include "text/normalizer.hpp"

#include <memory>
#include <vector>

#include <unicode/uchar.h>

#include "text/byte_level.hpp"
#include "text/regex.hpp"
#include "text/unicode.hpp"
#include "text/utf8.hpp"

namespace lorafast::text {
namespace {

// `text` without its leading and/or trailing White_Space.
void strip(std::string& text, bool left, bool right) {
  std::size_t begin = 0, end = text.size();
  if (left) {
    for (std::size_t pos = 0; pos < text.size();) {
      if (!is_white_space(next_code_point(text, pos))) break;
      begin = pos;
    }
  }
  if (right) {
    while (end > begin) {
      std::size_t start = end - 1;
      while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
      std::size_t pos = start;
      if (!is_white_space(next_code_point(text, pos))) break;
      end = start;
    }
  }
  text = text.substr(begin, end - begin);
}

void strip_accents(std::string& text) {
  std::string out;
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t start = pos;
    if (u_charType(static_cast<UChar32>(next_code_point(text, pos))) != U_NON_SPACING_MARK)
      out.append(text, start, pos - start);
  }
  text = std::move(out);
}

Normalizer replace(const json& component, const std::string& where) {
  auto regex = std::make_shared<Regex>(pattern_field(component, "pattern", where), where);
  const std::string content = json_string(require_field(component, "content", where), field_name(where, "content"));
  return [regex, content](std::string& text) {
    std::vector<Span> spans;
    regex->find_matches(text, spans);
    std::string out;
    for (const Span& s : spans) {
      if (s.is_match) out += content;
      else out.append(text, s.begin, s.end - s.begin);
    }
    text = std::move(out);
  };
}

Normalizer sequence(const json& component, const std::string& where) {
  const json& items = require_field(component, "normalizers", where);
  LF_CHECK(items.is_array(), ErrorKind::bad_input, field_name(where, "normalizers"), " must be an array");
  std::vector<Normalizer> steps;
  for (std::size_t i = 0; i < items.size(); ++i) {
    Normalizer step = parse_normalizer(items[i], item_name(where, "normalizers", i));
    if (step) steps.push_back(std::move(step));
  }
  return [steps = std::move(steps)](std::string& text) {
    for (const Normalizer& step : steps) step(text);
  };
}

Normalizer unicode_form(UnicodeForm form) {
  return [form](std::string& text) { text = normalize_unicode(text, form); };
}

}  // namespace

Normalizer parse_normalizer(const json& component, const std::string& where) {
  if (component.is_null()) return {};
  const std::string& type = component_type(component, where);
  if (type == "Sequence") return sequence(component, where);
  if (type == "NFC") return unicode_form(UnicodeForm::nfc);
  if (type == "NFD") return unicode_form(UnicodeForm::nfd);
  if (type == "NFKC") return unicode_form(UnicodeForm::nfkc);
  if (type == "NFKD") return unicode_form(UnicodeForm::nfkd);
  if (type == "Lowercase") return [](std::string& text) { text = lowercase(text); };
  if (type == "StripAccents") return strip_accents;
  if (type == "Strip") {
    const bool left = bool_field(component, "strip_left", true, where);
    const bool right = bool_field(component, "strip_right", true, where);
    return [left, right](std::string& text) { strip(text, left, right); };
  }
  if (type == "Prepend") {
    const std::string prefix = json_string(require_field(component, "prepend", where), field_name(where, "prepend"));
    return [prefix](std::string& text) {
      if (!text.empty()) text.insert(0, prefix);
    };
  }
  if (type == "Replace") return replace(component, where);
  if (type == "ByteLevel") return [](std::string& text) { text = bytes_to_unicode(text); };
  throw Error(ErrorKind::bad_input, cat(field_name(where, "type"), ": normalizer ", quote(type),
                                        " is not supported (NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, "
                                        "Prepend, Replace, ByteLevel, Sequence)"));
}

}  // namespace lorafast::text
