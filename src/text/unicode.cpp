#include "text/unicode.hpp"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/ustring.h>
#include <unicode/bytestream.h>

#include "lorafast/error.hpp"
#include "text/utf8.hpp"

namespace lorafast::text {
namespace {

const icu::Normalizer2& normalizer_of(UnicodeForm form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case UnicodeForm::nfc: n = icu::Normalizer2::getNFCInstance(status); break;
    case UnicodeForm::nfd: n = icu::Normalizer2::getNFDInstance(status); break;
    case UnicodeForm::nfkc: n = icu::Normalizer2::getNFKCInstance(status); break;
    case UnicodeForm::nfkd: n = icu::Normalizer2::getNFKDInstance(status); break;
  }
  LF_CHECK(U_SUCCESS(status) && n != nullptr, ErrorKind::bad_input, "ICU has no Unicode normalization data: ",
           u_errorName(status));
  return *n;
}

}  // namespace

std::string normalize_unicode(std::string_view text, UnicodeForm form) {
  const icu::Normalizer2& n = normalizer_of(form);
  const icu::StringPiece piece(text.data(), static_cast<std::int32_t>(text.size()));
  UErrorCode status = U_ZERO_ERROR;
  if (n.isNormalizedUTF8(piece, status) && U_SUCCESS(status)) return std::string(text);
  status = U_ZERO_ERROR;
  std::string out;
  icu::StringByteSink<std::string> sink(&out, static_cast<std::int32_t>(text.size()));
  n.normalizeUTF8(0, piece, sink, nullptr, status);
  LF_CHECK(U_SUCCESS(status), ErrorKind::bad_input, "Unicode normalization failed: ", u_errorName(status));
  return out;
}

std::string lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t pos = 0; pos < text.size();) {
    const char32_t c = next_code_point(text, pos);
    if (c < 0x80) {
      out += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
      continue;
    }
    UChar in[2];
    std::int32_t in_length = 0;
    U16_APPEND_UNSAFE(in, in_length, c);
    UChar lower[8];
    UErrorCode status = U_ZERO_ERROR;
    const std::int32_t n = u_strToLower(lower, 8, in, in_length, "", &status);
    LF_ASSERT(U_SUCCESS(status) && n <= 8);
    for (std::int32_t i = 0; i < n;) {
      UChar32 d;
      U16_NEXT_UNSAFE(lower, i, d);
      append_utf8(out, static_cast<char32_t>(d));
    }
  }
  return out;
}

bool is_white_space(char32_t c) { return u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_WHITE_SPACE); }

bool is_word_char(char32_t c) {
  const auto u = static_cast<UChar32>(c);
  const std::int32_t category = U_GET_GC_MASK(u);
  return u_hasBinaryProperty(u, UCHAR_ALPHABETIC) || u_hasBinaryProperty(u, UCHAR_JOIN_CONTROL) ||
         (category & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0;
}

}  // namespace lorafast::text
