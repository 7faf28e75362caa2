// Regular expressions of tokenizer.json through PCRE2 (UTF + UCP, JIT-compiled when
// the platform allows), iterated the way the tokenizers library iterates its
// Oniguruma matches, so splits and replacements land on the same bytes.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lorafast::text {

// A piece of a searched text: bytes [begin, end), a match of the pattern or the
// text between two matches.
struct Span {
  std::size_t begin = 0;
  std::size_t end = 0;
  bool is_match = false;
};

class Regex {
 public:
  // Error(bad_input) "<where>: regex ... does not compile: ..." when it does not.
  Regex(std::string_view pattern, const std::string& where);

  // The library's find_matches: matches and the text between them, in order,
  // covering `text` (valid UTF-8); an empty match right after the previous match is
  // skipped. Empty `text` gives one empty non-match. Appends to `out`.
  void find_matches(std::string_view text, std::vector<Span>& out) const;

  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  ~Regex();

 private:
  struct Code;
  std::unique_ptr<Code> code_;
};

}  // namespace lorafast::text
