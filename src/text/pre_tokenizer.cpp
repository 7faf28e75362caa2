#include "text/pre_tokenizer.hpp"

#include <memory>

#include "text/byte_level.hpp"
#include "text/regex.hpp"
#include "text/split.hpp"
#include "text/utf8.hpp"

namespace lorafast::text {
namespace {

constexpr auto bad = ErrorKind::bad_input;

// GPT-2's pattern, which the ByteLevel pre-tokenizer splits with (use_regex).
constexpr std::string_view gpt2_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Applies `split` to every piece that is not an added token.
template <class Fn>
PreTokenizer each_piece(Fn split) {
  return [split](std::vector<Piece>& pieces) {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    for (Piece& p : pieces) {
      if (p.added_id >= 0) out.push_back(std::move(p));
      else split(std::move(p), out);
    }
    pieces = std::move(out);
  };
}

PreTokenizer splitter(std::shared_ptr<const Regex> regex, SplitBehavior behavior, bool invert) {
  return each_piece([regex, behavior, invert](Piece&& p, std::vector<Piece>& out) {
    split_piece(std::move(p), *regex, behavior, invert, out);
  });
}

SplitBehavior split_behavior(const json& value, const std::string& what) {
  const std::string& name = json_string(value, what);
  if (name == "Isolated") return SplitBehavior::isolated;
  if (name == "Removed") return SplitBehavior::removed;
  if (name == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (name == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (name == "Contiguous") return SplitBehavior::contiguous;
  throw Error(bad, cat(what, ": unknown behavior ", quote(name)));
}

PreTokenizer byte_level(const json& component, const std::string& where) {
  const bool add_prefix_space = bool_field(component, "add_prefix_space", true, where);
  const bool use_regex = bool_field(component, "use_regex", true, where);
  auto regex = std::make_shared<const Regex>(gpt2_pattern, where);
  return each_piece([=](Piece&& p, std::vector<Piece>& out) {
    if (add_prefix_space && p.text.front() != ' ') p.text.insert(0, 1, ' ');
    if (!use_regex) {
      out.push_back({bytes_to_unicode(p.text), -1, p.at_start});
      return;
    }
    std::vector<Span> spans;
    regex->find_matches(p.text, spans);
    for (const Span& s : spans)
      out.push_back({bytes_to_unicode(std::string_view(p.text).substr(s.begin, s.end - s.begin)), -1,
                     p.at_start && s.begin == 0});
  });
}

PreTokenizer metaspace(const json& component, const std::string& where) {
  std::string replacement;
  append_utf8(replacement, char_field(component, "replacement", where));
  const std::string scheme = prepend_scheme_field(component, where);
  const bool split = bool_field(component, "split", true, where);
  auto regex = std::make_shared<const Regex>(regex_escape(replacement), where);
  return each_piece([=](Piece&& p, std::vector<Piece>& out) {
    std::string text;
    text.reserve(p.text.size() + replacement.size());
    for (const char c : p.text) {
      if (c == ' ') text += replacement;
      else text += c;
    }
    if (!text.starts_with(replacement) && (scheme == "always" || (scheme == "first" && p.at_start)))
      text.insert(0, replacement);
    p.text = std::move(text);
    if (split) split_piece(std::move(p), *regex, SplitBehavior::merged_with_next, false, out);
    else out.push_back(std::move(p));
  });
}

PreTokenizer sequence(const json& component, const std::string& where) {
  const json& items = require_field(component, "pretokenizers", where);
  LF_CHECK(items.is_array(), bad, field_name(where, "pretokenizers"), " must be an array");
  std::vector<PreTokenizer> steps;
  for (std::size_t i = 0; i < items.size(); ++i) {
    PreTokenizer step = parse_pre_tokenizer(items[i], item_name(where, "pretokenizers", i));
    if (step) steps.push_back(std::move(step));
  }
  return [steps = std::move(steps)](std::vector<Piece>& pieces) {
    for (const PreTokenizer& step : steps) step(pieces);
  };
}

}  // namespace

PreTokenizer parse_pre_tokenizer(const json& component, const std::string& where) {
  if (component.is_null()) return {};
  const std::string& type = component_type(component, where);
  const auto regex = [&](std::string_view pattern) { return std::make_shared<const Regex>(pattern, where); };
  if (type == "Sequence") return sequence(component, where);
  if (type == "ByteLevel") return byte_level(component, where);
  if (type == "Metaspace") return metaspace(component, where);
  if (type == "Split") {
    return splitter(regex(pattern_field(component, "pattern", where)),
                    split_behavior(require_field(component, "behavior", where), field_name(where, "behavior")),
                    bool_field(component, "invert", false, where));
  }
  if (type == "Digits") {
    const bool individual = bool_field(component, "individual_digits", false, where);
    return splitter(regex(R"(\p{N})"), individual ? SplitBehavior::isolated : SplitBehavior::contiguous, false);
  }
  if (type == "Punctuation") {  // Unicode punctuation and ASCII punctuation (which includes symbols like $+<=>^`|~)
    const json* behavior = find_field(component, "behavior");
    return splitter(regex(R"([\p{P}!-/:-@\[-`{-~])"),
                    behavior == nullptr ? SplitBehavior::isolated : split_behavior(*behavior, field_name(where, "behavior")),
                    false);
  }
  if (type == "WhitespaceSplit") return splitter(regex(R"(\p{White_Space})"), SplitBehavior::removed, false);
  if (type == "Whitespace")  // the library's \w+|[^\w\s]+ (Rust regex classes), keeping the matches
    return splitter(regex(R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]+)"
                          R"(|[^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}\p{White_Space}]+)"),
                    SplitBehavior::removed, true);
  if (type == "CharDelimiterSplit") {
    std::string delimiter;
    append_utf8(delimiter, char_field(component, "delimiter", where));
    return splitter(regex(regex_escape(delimiter)), SplitBehavior::removed, false);
  }
  throw Error(bad, cat(field_name(where, "type"), ": pre-tokenizer ", quote(type),
                       " is not supported (ByteLevel, Split, Metaspace, Digits, Punctuation, Whitespace, "
                       "WhitespaceSplit, CharDelimiterSplit, Sequence)"));
}

}  // namespace lorafast::text
