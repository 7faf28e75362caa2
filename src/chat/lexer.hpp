// The template's tokens as Jinja2's lexer makes them with trim_blocks and
// lstrip_blocks on and keep_trailing_newline off: text between tags (with the
// whitespace control of `-`, `+`, trim_blocks and lstrip_blocks applied), the
// delimiters of {{ }} and {% %}, and the names, literals and operators inside them.
// Comments are dropped. Newlines are normalized to \n first.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lorafast::chat {

enum class TokenKind { text, variable_begin, variable_end, block_begin, block_end, name, string, integer, floating,
                       op, end };

struct Token {
  TokenKind kind;
  std::string text;  // text, name, operator, or a string literal's value
  std::int64_t integer = 0;
  double floating = 0;
  int line = 1;
};

// Throws TemplateError (with the line) on an unterminated tag, comment or string, or
// a character that starts no token.
std::vector<Token> lex(std::string_view source);

}  // namespace lorafast::chat
