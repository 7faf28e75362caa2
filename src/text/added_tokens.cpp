#include "text/added_tokens.hpp"

#include <algorithm>

#include "text/unicode.hpp"
#include "text/utf8.hpp"

namespace lorafast::text {
namespace {

constexpr auto bad = ErrorKind::bad_input;

// The code point that ends at byte `end` of valid UTF-8.
char32_t code_point_before(std::string_view text, std::size_t end) {
  std::size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  return next_code_point(text, start);
}

}  // namespace

void AddedTokens::Matcher::add(const std::string& pattern, std::size_t token) {
  auto& bucket = by_first_byte[static_cast<unsigned char>(pattern[0])];
  if (std::any_of(bucket.begin(), bucket.end(), [&](const auto& p) { return p.first == pattern; })) return;
  bucket.emplace_back(pattern, token);
  std::stable_sort(bucket.begin(), bucket.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  empty = false;
}

bool AddedTokens::Matcher::find(std::string_view text, std::size_t from, std::size_t& begin, std::size_t& length,
                                std::size_t& token) const {
  for (std::size_t i = from; i < text.size(); ++i) {
    for (const auto& [pattern, index] : by_first_byte[static_cast<unsigned char>(text[i])]) {
      if (text.compare(i, pattern.size(), pattern) == 0) {
        begin = i;
        length = pattern.size();
        token = index;
        return true;
      }
    }
  }
  return false;
}

AddedTokens AddedTokens::parse(const json& list, const BpeModel& model, const Normalizer& normalizer,
                               const std::string& where) {
  AddedTokens a;
  a.id_bound_ = model.id_bound();
  if (list.is_null()) return a;
  LF_CHECK(list.is_array(), bad, where, " must be an array, got ", describe(list));
  auto next_id = static_cast<std::int64_t>(model.size());
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string what = cat(where, "[", i, "]");
    const json& item = list[i];
    LF_CHECK(item.is_object(), bad, what, " must be an object, got ", describe(item));
    AddedToken t;
    t.content = json_string(require_field(item, "content", what), field_name(what, "content"));
    const std::int64_t file_id = json_integer(require_field(item, "id", what), 0, max_token_id, field_name(what, "id"));
    t.single_word = bool_field(item, "single_word", false, what);
    t.lstrip = bool_field(item, "lstrip", false, what);
    t.rstrip = bool_field(item, "rstrip", false, what);
    t.special = bool_field(item, "special", false, what);
    t.normalized = bool_field(item, "normalized", !t.special, what);
    if (t.content.empty()) continue;  // the library ignores these
    LF_CHECK(is_valid_utf8(t.content), bad,
             field_name(what, "content"), " is not UTF-8");
    std::int64_t id;
    if (const auto known = a.by_content_.find(t.content); known != a.by_content_.end()) id = a.tokens_[known->second].id;
    else if (const auto in_model = model.id_of(t.content)) id = *in_model;
    else id = next_id++;
    LF_CHECK(id == file_id, bad, field_name(what, "id"), ": token ", quote(t.content), " has id ", file_id,
             " where the tokenizers library gives it ", id);
    LF_CHECK(id <= max_token_id, bad, what, ": id ", id, " exceeds ", max_token_id);
    t.id = static_cast<std::int32_t>(id);
    if (const auto known = a.by_content_.find(t.content); known != a.by_content_.end()) {
      a.tokens_[known->second] = t;  // a repeated token takes its last properties
    } else {
      a.by_content_.emplace(t.content, a.tokens_.size());
      a.tokens_.push_back(t);
    }
    a.id_bound_ = std::max(a.id_bound_, t.id + 1);
  }
  for (std::size_t i = 0; i < a.tokens_.size(); ++i) {
    const AddedToken& t = a.tokens_[i];
    a.by_id_.emplace(t.id, i);
    if (!t.normalized) {
      a.raw_.add(t.content, i);
      continue;
    }
    std::string pattern = t.content;
    if (normalizer) normalizer(pattern);
    if (!pattern.empty()) a.normalized_.add(pattern, i);
  }
  return a;
}

const AddedToken* AddedTokens::find(std::int32_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedTokens::find(std::string_view content) const {
  const auto it = by_content_.find(content);
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

void AddedTokens::split(std::vector<Piece>& pieces, bool normalized) const {
  const Matcher& matcher = normalized ? normalized_ : raw_;
  if (matcher.empty) return;
  std::vector<Piece> out;
  for (Piece& p : pieces) {
    if (p.added_id >= 0) out.push_back(std::move(p));
    else split_piece(std::move(p), matcher, out);
  }
  pieces = std::move(out);
}

// The library's AddedVocabulary::find_matches on one piece.
void AddedTokens::split_piece(Piece&& piece, const Matcher& matcher, std::vector<Piece>& out) const {
  const std::string_view text = piece.text;
  std::size_t kept_from = 0;  // start of the text not yet emitted
  std::size_t search = 0, begin = 0, length = 0, index = 0;
  const auto emit_text = [&](std::size_t from, std::size_t to) {
    if (from < to) out.push_back({std::string(text.substr(from, to - from)), -1, piece.at_start && from == 0});
  };
  while (matcher.find(text, search, begin, length, index)) {
    const AddedToken& t = tokens_[index];
    std::size_t start = begin, stop = begin + length;
    search = stop;
    if (t.single_word) {
      const bool word_before = start > 0 && is_word_char(code_point_before(text, start));
      std::size_t after = stop;
      const bool word_after = stop < text.size() && is_word_char(next_code_point(text, after));
      if (word_before || word_after) continue;
    }
    if (t.lstrip) {
      std::size_t s = start;
      while (s > 0) {
        const char32_t c = code_point_before(text, s);
        if (!is_white_space(c)) break;
        std::string encoded;
        append_utf8(encoded, c);
        s -= encoded.size();
      }
      start = std::max(s, kept_from);
    }
    if (t.rstrip) {
      for (std::size_t pos = stop; pos < text.size();) {
        if (!is_white_space(next_code_point(text, pos))) break;
        stop = pos;
      }
    }
    emit_text(kept_from, start);
    out.push_back({t.content, t.id, false});
    kept_from = stop;
  }
  if (kept_from == 0) {
    out.push_back(std::move(piece));
    return;
  }
  emit_text(kept_from, text.size());
}

}  // namespace lorafast::text
