// The files of `lorafast tokenize`: text to encode, and ids to decode.
#include <charconv>

#include "core/json_read.hpp"
#include "core/text_file.hpp"
#include "lorafast/tokenizer.hpp"

namespace lorafast {

std::vector<std::int32_t> parse_id_list(std::string_view text, const std::string& path) {
  std::vector<std::int32_t> ids;
  const std::size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '{') {
    const nlohmann::json doc = parse_json(text, path);
    const nlohmann::json& list = require_field(doc, "ids", path);
    LF_CHECK(list.is_array(), ErrorKind::bad_input, path, ": 'ids' must be an array, got ", describe(list));
    for (std::size_t i = 0; i < list.size(); ++i)
      ids.push_back(static_cast<std::int32_t>(json_integer(list[i], 0, INT32_MAX, cat(path, ": ids[", i, "]"))));
    return ids;
  }
  std::size_t line = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    ++line;
    std::string_view field(text.data() + pos, end - pos);
    while (!field.empty() && (field.back() == '\r' || field.back() == ' ' || field.back() == '\t')) field.remove_suffix(1);
    while (!field.empty() && (field.front() == ' ' || field.front() == '\t')) field.remove_prefix(1);
    pos = end + 1;
    if (field.empty()) continue;
    std::int32_t id = 0;
    const auto [rest, ec] = std::from_chars(field.data(), field.data() + field.size(), id);
    LF_CHECK(ec == std::errc() && rest == field.data() + field.size() && id >= 0, ErrorKind::bad_input, path,
             ": line ", line, ": ", quote(field), " is not a token id (a non-negative 32-bit integer)");
    ids.push_back(id);
  }
  return ids;
}

std::vector<std::int32_t> read_id_file(const std::filesystem::path& path) {
  return parse_id_list(read_text_file(path, max_text_bytes), path.string());
}

std::string read_text_to_encode(const std::filesystem::path& path) { return read_text_file(path, max_text_bytes); }

}  // namespace lorafast
