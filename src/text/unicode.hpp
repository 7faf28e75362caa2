// Unicode normalization forms, lowercasing and character classes through ICU.
#pragma once

#include <string>
#include <string_view>

namespace lorafast::text {

enum class UnicodeForm { nfc, nfd, nfkc, nfkd };

// `text` (valid UTF-8) in normalization form `form`.
std::string normalize_unicode(std::string_view text, UnicodeForm form);

// Each code point replaced by its full lowercase mapping with no context (Rust's
// char::to_lowercase, which the library applies character by character).
std::string lowercase(std::string_view text);

// Unicode White_Space (Rust's char::is_whitespace and regex \s).
bool is_white_space(char32_t c);
// Rust regex's Unicode \w: Alphabetic, Mark, Decimal_Number, Connector_Punctuation,
// Join_Control.
bool is_word_char(char32_t c);

}  // namespace lorafast::text
