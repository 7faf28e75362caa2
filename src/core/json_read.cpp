// JSON from files (see json_read.hpp).
#include "core/json_read.hpp"

#include <cmath>
#include <set>
#include <vector>

namespace lorafast {

using nlohmann::json;
namespace {

constexpr auto bad = ErrorKind::bad_input;

}  // namespace

namespace {

template <class Json>
Json parse_checked(std::string_view text, const std::string& origin) {
  // nlohmann's parser is iterative; the callback sees each container open before
  // it is built, so depth is capped before any recursion (destruction, dump) runs.
  std::vector<std::set<std::string>> keys;  // the keys seen in each open object
  const typename Json::parser_callback_t check = [&](int depth, typename Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        LF_CHECK(depth < max_json_depth, bad, origin, ": JSON nested deeper than ", max_json_depth, " levels");
        if (event == Json::parse_event_t::object_start) keys.emplace_back();
        break;
      case Json::parse_event_t::object_end: keys.pop_back(); break;
      case Json::parse_event_t::key: {
        const auto& key = parsed.template get_ref<const std::string&>();
        LF_CHECK(keys.back().insert(key).second, bad, origin, ": duplicate key ", quote(key));
        break;
      }
      default: break;
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), check);
  } catch (const typename Json::parse_error& e) {
    // The parser quotes the offending token, which may be huge.
    throw Error(bad, cat(origin, ": not valid JSON (byte ", e.byte, "): ", one_line(e.what(), 200)));
  } catch (const typename Json::exception& e) {  // e.g. out_of_range 406: a number too large for a double
    throw Error(bad, cat(origin, ": not valid JSON: ", one_line(e.what(), 200)));
  }
}

}  // namespace

json parse_json(std::string_view text, const std::string& origin) { return parse_checked<json>(text, origin); }

nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& origin) {
  return parse_checked<nlohmann::ordered_json>(text, origin);
}

std::string describe(const json& value) {
  switch (value.type()) {
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return quote(value.get_ref<const std::string&>());
    default: return one_line(value.dump(), 40);  // a number, bool or null: short already
  }
}

const json* find_field(const json& object, std::string_view key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

const json& require_field(const json& object, std::string_view key, const std::string& where) {
  const json* value = find_field(object, key);
  LF_CHECK(value != nullptr, bad, where, ": missing '", key, "'");
  return *value;
}

std::int64_t json_integer(const json& value, std::int64_t lo, std::int64_t hi, const std::string& what) {
  // The signed/unsigned tests come first: get<> on a float or a huge unsigned would be undefined.
  const bool in_range = (value.is_number_unsigned() && value.get<std::uint64_t>() <= static_cast<std::uint64_t>(hi) &&
                         static_cast<std::int64_t>(value.get<std::uint64_t>()) >= lo) ||
                        (value.is_number_integer() && !value.is_number_unsigned() &&
                         value.get<std::int64_t>() >= lo && value.get<std::int64_t>() <= hi);
  LF_CHECK(in_range, bad, what, " must be an integer in [", lo, ", ", hi, "], got ", describe(value));
  return value.is_number_unsigned() ? static_cast<std::int64_t>(value.get<std::uint64_t>()) : value.get<std::int64_t>();
}

std::uint64_t json_unsigned(const json& value, const std::string& what) {
  LF_CHECK(value.is_number_unsigned(), bad, what, " must be a non-negative integer, got ", describe(value));
  return value.get<std::uint64_t>();
}

double json_number(const json& value, const std::string& what) {
  LF_CHECK(value.is_number(), bad, what, " must be a number, got ", describe(value));
  const double x = value.get<double>();
  LF_CHECK(std::isfinite(x), bad, what, " must be finite, got ", x);
  return x;
}

const std::string& json_string(const json& value, const std::string& what) {
  LF_CHECK(value.is_string(), bad, what, " must be a string, got ", describe(value));
  return value.get_ref<const std::string&>();
}

bool json_bool(const json& value, const std::string& what) {
  LF_CHECK(value.is_boolean(), bad, what, " must be true or false, got ", describe(value));
  return value.get<bool>();
}

}  // namespace lorafast
