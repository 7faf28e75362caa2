// Python's str methods on UTF-8 text (valid UTF-8 in, valid UTF-8 out), counting
// code points where Python does: len, indexing, slicing, strip, split, case.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lorafast::chat::py {

std::vector<char32_t> code_points(std::string_view s);
std::string from_code_points(const std::vector<char32_t>& cps, std::size_t begin, std::size_t end);
std::size_t length(std::string_view s);

bool is_space(char32_t c);  // str.isspace
// strip / lstrip / rstrip; `chars` absent: whitespace.
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
// split / rsplit; `sep` absent: runs of whitespace. maxsplit < 0: no limit.
std::vector<std::string> split(std::string_view s, const std::optional<std::string>& sep, std::int64_t maxsplit,
                               bool from_right);
std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string capitalize(std::string_view s);
std::string title(std::string_view s);
// replace(old, new, count): Python's rule for an empty `old` included.
std::string replace(std::string_view s, std::string_view old, std::string_view with, std::int64_t count,
                    std::size_t max_bytes);
// Code point index of the first (or last) occurrence, -1 when absent.
std::int64_t find(std::string_view s, std::string_view sub, bool last);
std::int64_t count(std::string_view s, std::string_view sub);

}  // namespace lorafast::chat::py
