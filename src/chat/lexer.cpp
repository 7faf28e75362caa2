// Jinja2's lexer for chat templates (jinja2/lexer.py), with the environment
// transformers uses: trim_blocks, lstrip_blocks, keep_trailing_newline off.
#include "chat/lexer.hpp"

#include <charconv>
#include <cstring>

#include "chat/value.hpp"
#include "text/unicode.hpp"
#include "text/utf8.hpp"

namespace lorafast::chat {
namespace {

bool is_space(char32_t c) { return c < 0x80 ? (c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f)) : text::is_white_space(c); }

// Python's str.rstrip() (every whitespace code point) of valid UTF-8.
std::size_t rstrip_end(std::string_view s) {
  std::size_t end = s.size();
  while (end > 0) {
    std::size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    std::size_t pos = start;
    if (!is_space(text::next_code_point(s, pos))) break;
    end = start;
  }
  return end;
}

// Length of the whitespace run at `pos` (regex \s*).
std::size_t space_run(std::string_view s, std::size_t pos) {
  std::size_t p = pos;
  while (p < s.size()) {
    std::size_t next = p;
    if (!is_space(text::next_code_point(s, next))) break;
    p = next;
  }
  return p - pos;
}

std::string normalize_newlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (std::size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();  // keep_trailing_newline=False
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) : src_(normalize_newlines(source)) {}

  std::vector<Token> run() {
    check_utf8();
    bool line_starting = true;
    while (pos_ < src_.size()) {
      std::size_t open = src_.size();
      for (const char* opener : {"{{", "{%", "{#"}) open = std::min(open, src_.find(opener, pos_));
      std::string text = src_.substr(pos_, open - pos_);
      if (open == src_.size()) {
        emit_text(std::move(text));
        break;
      }
      const char kind = src_[open + 1];
      const char sign = open + 2 < src_.size() ? src_[open + 2] : '\0';
      if (sign == '-') {
        text.resize(rstrip_end(text));
      } else if (sign != '+' && kind != '{') {
        const std::size_t l_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((l_pos > 0 || line_starting) && l_pos < text.size() && space_run(text, l_pos) == text.size() - l_pos)
          text.resize(l_pos);
      }
      emit_text(std::move(text));
      advance_to(open + 2 + ((sign == '-' || sign == '+') ? 1 : 0));
      if (kind == '#') line_starting = comment();
      else line_starting = tag(kind == '{' ? TokenKind::variable_begin : TokenKind::block_begin);
    }
    tokens_.push_back({TokenKind::end, "", 0, 0, line_});
    return std::move(tokens_);
  }

 private:
  void check_utf8() {
    if (!text::is_valid_utf8(src_)) throw TemplateError("the template is not valid UTF-8", 1);
  }

  void advance_to(std::size_t p) {
    for (std::size_t i = pos_; i < p; ++i) line_ += src_[i] == '\n';
    pos_ = p;
  }

  void emit_text(std::string text) {
    if (text.empty()) return;
    int line = line_;
    tokens_.push_back({TokenKind::text, std::move(text), 0, 0, line});
  }

  // After the closing delimiter at pos_ (length `len`): `-` strips the following
  // whitespace, trim_blocks one newline after a block or comment. Returns whether
  // the match ended with a newline (Jinja's line_starting).
  bool close(std::size_t len, bool strip, bool trim) {
    std::size_t end = pos_ + len;
    if (strip) end += space_run(src_, end);
    else if (trim && end < src_.size() && src_[end] == '\n') ++end;
    const bool newline = end > pos_ && src_[end - 1] == '\n';
    advance_to(end);
    return newline;
  }

  bool comment() {
    const std::size_t close_at = src_.find("#}", pos_);
    if (close_at == std::string::npos) throw TemplateError("unterminated comment", line_);
    const char before = close_at > pos_ ? src_[close_at - 1] : '\0';
    advance_to(close_at);
    return close(2, before == '-', before != '+');
  }

  bool tag(TokenKind begin) {
    const bool block = begin == TokenKind::block_begin;
    const int start_line = line_;
    tokens_.push_back({begin, "", 0, 0, line_});
    std::string balance;
    while (true) {
      advance_to(pos_ + space_run(src_, pos_));
      if (pos_ >= src_.size())
        throw TemplateError(block ? "unterminated block tag {% ... %}" : "unterminated expression {{ ... }}", start_line);
      const std::string_view rest = std::string_view(src_).substr(pos_);
      if (balance.empty()) {
        const char* end = block ? "%}" : "}}";
        const auto ends = [&](std::string_view prefix) { return rest.substr(0, prefix.size()) == prefix; };
        if (ends(std::string("-") + end) || (block && ends(std::string("+") + end)) || ends(end)) {
          const bool signed_end = rest[0] == '-' || rest[0] == '+';
          tokens_.push_back({block ? TokenKind::block_end : TokenKind::variable_end, "", 0, 0, line_});
          return close(signed_end ? 3 : 2, rest[0] == '-', block && rest[0] != '+');
        }
      }
      const char c = rest[0];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        std::size_t n = 1;
        while (n < rest.size() && (std::isalnum(static_cast<unsigned char>(rest[n])) || rest[n] == '_')) ++n;
        tokens_.push_back({TokenKind::name, std::string(rest.substr(0, n)), 0, 0, line_});
        advance_to(pos_ + n);
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        number(rest);
      } else if (c == '\'' || c == '"') {
        string_literal(rest);
      } else {
        op(rest, balance);
      }
    }
  }

  void number(std::string_view rest) {
    std::size_t n = 0;
    std::string digits;
    const auto run = [&] {
      while (n < rest.size() && (std::isdigit(static_cast<unsigned char>(rest[n])) ||
                                 (rest[n] == '_' && n + 1 < rest.size() && std::isdigit(static_cast<unsigned char>(rest[n + 1]))))) {
        if (rest[n] != '_') digits += rest[n];
        ++n;
      }
    };
    run();
    bool is_float = false;
    if (n + 1 < rest.size() && rest[n] == '.' && std::isdigit(static_cast<unsigned char>(rest[n + 1]))) {
      digits += rest[n++];
      run();
      is_float = true;
    }
    if (n < rest.size() && (rest[n] == 'e' || rest[n] == 'E')) {
      std::size_t m = n + 1;
      if (m < rest.size() && (rest[m] == '+' || rest[m] == '-')) ++m;
      if (m < rest.size() && std::isdigit(static_cast<unsigned char>(rest[m]))) {
        digits += 'e';
        digits.append(rest.substr(n + 1, m - n - 1));
        n = m;
        run();
        is_float = true;
      }
    }
    Token t{is_float ? TokenKind::floating : TokenKind::integer, digits, 0, 0, line_};
    if (is_float) {
      t.floating = std::strtod(digits.c_str(), nullptr);
    } else {
      const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), t.integer);
      if (ec != std::errc()) throw TemplateError("integer literal out of range", line_);
    }
    tokens_.push_back(std::move(t));
    advance_to(pos_ + n);
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // A quoted literal decoded as Python's unicode-escape codec decodes it.
  void string_literal(std::string_view rest) {
    const char quote = rest[0];
    std::string value;
    std::size_t n = 1;
    while (true) {
      if (n >= rest.size()) throw TemplateError("unterminated string literal", line_);
      const char c = rest[n];
      if (c == quote) break;
      if (c != '\\') {
        value += c;
        ++n;
        continue;
      }
      if (n + 1 >= rest.size()) throw TemplateError("unterminated string literal", line_);
      const char e = rest[n + 1];
      n += 2;
      const auto code = [&](std::size_t digits) {
        char32_t cp = 0;
        for (std::size_t k = 0; k < digits; ++k) {
          const int h = n + k < rest.size() ? hex_value(rest[n + k]) : -1;
          if (h < 0) throw TemplateError("truncated \\x, \\u or \\U escape in a string literal", line_);
          cp = cp * 16 + static_cast<char32_t>(h);
        }
        n += digits;
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
          throw TemplateError("escape names no Unicode scalar value in a string literal", line_);
        text::append_utf8(value, cp);
      };
      switch (e) {
        case '\n': break;
        case '\\': value += '\\'; break;
        case '\'': value += '\''; break;
        case '"': value += '"'; break;
        case 'a': value += '\a'; break;
        case 'b': value += '\b'; break;
        case 'f': value += '\f'; break;
        case 'n': value += '\n'; break;
        case 'r': value += '\r'; break;
        case 't': value += '\t'; break;
        case 'v': value += '\v'; break;
        case 'x': code(2); break;
        case 'u': code(4); break;
        case 'U': code(8); break;
        case 'N': throw TemplateError("\\N{...} escapes are not supported", line_);
        default:
          if (e >= '0' && e <= '7') {
            char32_t cp = static_cast<char32_t>(e - '0');
            for (int k = 0; k < 2 && n < rest.size() && rest[n] >= '0' && rest[n] <= '7'; ++k) cp = cp * 8 + (rest[n++] - '0');
            text::append_utf8(value, cp);
          } else {
            value += '\\';
            value += e;
          }
      }
    }
    tokens_.push_back({TokenKind::string, std::move(value), 0, 0, line_});
    advance_to(pos_ + n + 1);
  }

  void op(std::string_view rest, std::string& balance) {
    static const char* const two[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* o : two)
      if (rest.substr(0, 2) == o) {
        tokens_.push_back({TokenKind::op, o, 0, 0, line_});
        advance_to(pos_ + 2);
        return;
      }
    const char c = rest[0];
    if (std::strchr("+-/*%~<>=.,:|()[]{}", c) == nullptr || c == '\0') {
      std::size_t p = pos_;
      const char32_t cp = text::next_code_point(src_, p);
      throw TemplateError(cp < 0x80 ? cat_char("unexpected character '", c, "'") : "unexpected character in a tag",
                          line_);
    }
    if (c == '(' || c == '[' || c == '{') balance += c;
    if (c == ')' || c == ']' || c == '}') {
      const char want = c == ')' ? '(' : c == ']' ? '[' : '{';
      if (balance.empty() || balance.back() != want)
        throw TemplateError(cat_char("unexpected '", c, "'"), line_);
      balance.pop_back();
    }
    tokens_.push_back({TokenKind::op, std::string(1, c), 0, 0, line_});
    advance_to(pos_ + 1);
  }

  static std::string cat_char(const char* a, char c, const char* b) { return std::string(a) + c + b; }

  std::string src_;
  std::size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> lex(std::string_view source) { return Lexer(source).run(); }

}  // namespace lorafast::chat
