// Python's str methods for the template engine; case mappings through ICU (full
// mappings, root locale, as Python's str.upper and str.lower).
#include "chat/py_string.hpp"

#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/locid.h>

#include "chat/value.hpp"
#include "text/unicode.hpp"
#include "text/utf8.hpp"

namespace lorafast::chat::py {

std::vector<char32_t> code_points(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (std::size_t pos = 0; pos < s.size();) out.push_back(text::next_code_point(s, pos));
  return out;
}

std::string from_code_points(const std::vector<char32_t>& cps, std::size_t begin, std::size_t end) {
  std::string out;
  for (std::size_t i = begin; i < end; ++i) text::append_utf8(out, cps[i]);
  return out;
}

std::size_t length(std::string_view s) { return text::count_code_points(s); }

bool is_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
  return text::is_white_space(c);
}

std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  const std::vector<char32_t> cps = code_points(s);
  std::vector<char32_t> set;
  if (chars) set = code_points(*chars);
  const auto strippable = [&](char32_t c) {
    if (!chars) return is_space(c);
    for (char32_t x : set)
      if (x == c) return true;
    return false;
  };
  std::size_t begin = 0, end = cps.size();
  if (left)
    while (begin < end && strippable(cps[begin])) ++begin;
  if (right)
    while (end > begin && strippable(cps[end - 1])) --end;
  return from_code_points(cps, begin, end);
}

std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, std::int64_t maxsplit,
                               bool from_right) {
  std::vector<std::string> parts;
  if (sep) {
    if (sep->empty()) throw TemplateError("split: empty separator");
    if (!from_right) {
      std::size_t pos = 0;
      while (maxsplit < 0 || static_cast<std::int64_t>(parts.size()) < maxsplit) {
        const std::size_t at = s.find(*sep, pos);
        if (at == std::string_view::npos) break;
        parts.emplace_back(s.substr(pos, at - pos));
        pos = at + sep->size();
      }
      parts.emplace_back(s.substr(pos));
      return parts;
    }
    std::size_t end = s.size();
    while (maxsplit < 0 || static_cast<std::int64_t>(parts.size()) < maxsplit) {
      if (end < sep->size()) break;
      const std::size_t at = s.rfind(*sep, end - sep->size());
      if (at == std::string_view::npos) break;
      parts.emplace_back(s.substr(at + sep->size(), end - at - sep->size()));
      end = at;
    }
    parts.emplace_back(s.substr(0, end));
    return {parts.rbegin(), parts.rend()};
  }
  const std::vector<char32_t> cps = code_points(s);
  if (!from_right) {
    std::size_t i = 0;
    while (true) {
      while (i < cps.size() && is_space(cps[i])) ++i;
      if (i == cps.size()) break;
      if (maxsplit >= 0 && static_cast<std::int64_t>(parts.size()) == maxsplit) {
        std::size_t end = cps.size();
        while (end > i && is_space(cps[end - 1])) --end;
        parts.push_back(from_code_points(cps, i, end));
        break;
      }
      std::size_t j = i;
      while (j < cps.size() && !is_space(cps[j])) ++j;
      parts.push_back(from_code_points(cps, i, j));
      i = j;
    }
    return parts;
  }
  std::size_t i = cps.size();
  while (true) {
    while (i > 0 && is_space(cps[i - 1])) --i;
    if (i == 0) break;
    if (maxsplit >= 0 && static_cast<std::int64_t>(parts.size()) == maxsplit) {
      std::size_t begin = 0;
      while (begin < i && is_space(cps[begin])) ++begin;
      parts.push_back(from_code_points(cps, begin, i));
      break;
    }
    std::size_t j = i;
    while (j > 0 && !is_space(cps[j - 1])) --j;
    parts.push_back(from_code_points(cps, j, i));
    i = j;
  }
  return {parts.rbegin(), parts.rend()};
}

namespace {
std::string icu_case(std::string_view s, int mode) {
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(icu::StringPiece(s.data(), static_cast<int32_t>(s.size())));
  if (mode == 0) u.toUpper(icu::Locale::getRoot());
  else u.toLower(icu::Locale::getRoot());
  std::string out;
  u.toUTF8String(out);
  return out;
}
}  // namespace

std::string upper(std::string_view s) { return icu_case(s, 0); }
std::string lower(std::string_view s) { return icu_case(s, 1); }

std::string capitalize(std::string_view s) {
  if (s.empty()) return "";
  std::size_t pos = 0;
  const char32_t first = text::next_code_point(s, pos);
  std::string out;
  text::append_utf8(out, static_cast<char32_t>(u_totitle(static_cast<UChar32>(first))));
  return out + lower(s.substr(pos));
}

std::string title(std::string_view s) {
  std::string out;
  bool previous_cased = false;
  for (std::size_t pos = 0; pos < s.size();) {
    const std::size_t start = pos;
    const char32_t c = text::next_code_point(s, pos);
    const bool cased = u_hasBinaryProperty(static_cast<UChar32>(c), UCHAR_CASED);
    if (cased && !previous_cased) text::append_utf8(out, static_cast<char32_t>(u_totitle(static_cast<UChar32>(c))));
    else if (cased) out += lower(s.substr(start, pos - start));
    else out.append(s.substr(start, pos - start));
    previous_cased = cased;
  }
  return out;
}

std::string replace(std::string_view s, std::string_view old, std::string_view with, std::int64_t count,
                    std::size_t max_bytes) {
  std::string out;
  const auto grow = [&](std::string_view piece) {
    if (out.size() + piece.size() > max_bytes) throw TemplateError("replace: the result exceeds the size limit");
    out.append(piece);
  };
  if (old.empty()) {
    std::int64_t done = 0;
    for (std::size_t pos = 0; pos <= s.size();) {
      if (count < 0 || done < count) grow(with), ++done;
      if (pos == s.size()) break;
      const std::size_t start = pos;
      text::next_code_point(s, pos);
      grow(s.substr(start, pos - start));
    }
    return out;
  }
  std::size_t pos = 0;
  std::int64_t done = 0;
  while (count < 0 || done < count) {
    const std::size_t at = s.find(old, pos);
    if (at == std::string_view::npos) break;
    grow(s.substr(pos, at - pos));
    grow(with);
    pos = at + old.size();
    ++done;
  }
  grow(s.substr(pos));
  return out;
}

std::int64_t find(std::string_view s, std::string_view sub, bool last) {
  const std::size_t at = last ? s.rfind(sub) : s.find(sub);
  if (at == std::string_view::npos) return -1;
  return static_cast<std::int64_t>(length(s.substr(0, at)));
}

std::int64_t count(std::string_view s, std::string_view sub) {
  if (sub.empty()) return static_cast<std::int64_t>(length(s)) + 1;
  std::int64_t n = 0;
  for (std::size_t pos = s.find(sub); pos != std::string_view::npos; pos = s.find(sub, pos + sub.size())) ++n;
  return n;
}

}  // namespace lorafast::chat::py
