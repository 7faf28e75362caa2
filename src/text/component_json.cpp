#include "text/component_json.hpp"

#include <cctype>

#include "text/regex.hpp"
#include "text/utf8.hpp"

namespace lorafast::text {

namespace {
constexpr auto bad = ErrorKind::bad_input;
}  // namespace

std::string regex_escape(std::string_view literal) {
  std::string pattern;
  for (const char c : literal) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u)) pattern += '\\';
    pattern += c;
  }
  return pattern;
}

std::string field_name(const std::string& where, std::string_view key) { return cat(where, ": '", key, "'"); }

std::string item_name(const std::string& where, std::string_view key, std::size_t index) {
  return cat(where, ".", key, "[", index, "]");
}

const std::string& component_type(const json& component, const std::string& where) {
  LF_CHECK(component.is_object(), bad, where, " must be an object, got ", describe(component));
  return json_string(require_field(component, "type", where), field_name(where, "type"));
}

bool bool_field(const json& object, std::string_view key, bool fallback, const std::string& where) {
  const json* value = find_field(object, key);
  return value == nullptr || value->is_null() ? fallback : json_bool(*value, field_name(where, key));
}

std::string string_field(const json& object, std::string_view key, std::string_view fallback,
                         const std::string& where) {
  const json* value = find_field(object, key);
  return value == nullptr || value->is_null() ? std::string(fallback) : json_string(*value, field_name(where, key));
}

std::int64_t integer_field(const json& object, std::string_view key, std::int64_t fallback, std::int64_t lo,
                           std::int64_t hi, const std::string& where) {
  const json* value = find_field(object, key);
  return value == nullptr || value->is_null() ? fallback : json_integer(*value, lo, hi, field_name(where, key));
}

char32_t char_field(const json& object, std::string_view key, const std::string& where) {
  const std::string& s = json_string(require_field(object, key, where), field_name(where, key));
  LF_CHECK(!s.empty() && valid_sequence_length(s, 0) == s.size(), bad, field_name(where, key),
           " must be one character, got ", quote(s));
  std::size_t pos = 0;
  return next_code_point(s, pos);
}

std::string prepend_scheme_field(const json& component, const std::string& where) {
  const std::string scheme = string_field(component, "prepend_scheme", "always", where);
  LF_CHECK(scheme == "always" || scheme == "first" || scheme == "never", bad, field_name(where, "prepend_scheme"),
           " must be \"always\", \"first\" or \"never\", got ", quote(scheme));
  LF_CHECK(bool_field(component, "add_prefix_space", true, where) || scheme == "never", bad, where,
           ": add_prefix_space false contradicts prepend_scheme ", quote(scheme));
  return scheme;
}

std::string pattern_field(const json& object, std::string_view key, const std::string& where) {
  const json& pattern = require_field(object, key, where);
  const std::string name = field_name(where, key);
  LF_CHECK(pattern.is_object() && pattern.size() == 1, bad, name,
           " must be {\"String\": ...} or {\"Regex\": ...}, got ", describe(pattern));
  if (const json* s = find_field(pattern, "String")) return regex_escape(json_string(*s, name));
  if (const json* r = find_field(pattern, "Regex")) return json_string(*r, name);
  throw Error(bad, cat(name, " must be {\"String\": ...} or {\"Regex\": ...}"));
}

}  // namespace lorafast::text
