// Reading JSON from files, which are hostile: a nesting-depth cap enforced while
// parsing (no recursion a file controls), duplicate keys rejected, every nlohmann
// exception turned into Error(bad_input) naming the file, and typed getters that
// check a value's kind and range before converting it. Messages never dump a
// file's value: structured values are named by type, scalars are quoted briefly.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "lorafast/error.hpp"

namespace lorafast {

constexpr int max_json_depth = 64;

// The document in `text`; Error(bad_input) "<origin>: ..." when it is not JSON, nests
// deeper than max_json_depth or repeats a key within an object.
nlohmann::json parse_json(std::string_view text, const std::string& origin);
// The same, keeping each object's keys in the file's order (as Python's json does).
nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& origin);

// A value for a message: "an array", "an object", or a short quoted scalar.
std::string describe(const nlohmann::json& value);

// `object[key]`, or nullptr when absent or when `object` is not an object.
const nlohmann::json* find_field(const nlohmann::json& object, std::string_view key);
// `object[key]`; Error(bad_input) "<where>: missing '<key>'" when absent.
const nlohmann::json& require_field(const nlohmann::json& object, std::string_view key, const std::string& where);

// The value as an integer in [lo, hi]; `what` (e.g. "file: 'n_layer'") names it in errors.
std::int64_t json_integer(const nlohmann::json& value, std::int64_t lo, std::int64_t hi, const std::string& what);
// The value as an unsigned 64-bit integer.
std::uint64_t json_unsigned(const nlohmann::json& value, const std::string& what);
// A finite number.
double json_number(const nlohmann::json& value, const std::string& what);
const std::string& json_string(const nlohmann::json& value, const std::string& what);
bool json_bool(const nlohmann::json& value, const std::string& what);

}  // namespace lorafast
