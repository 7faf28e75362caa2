// Reading the components of a tokenizer.json (normalizer, pre_tokenizer, model,
// decoder, added tokens): typed fields on top of core/json_read, where `where`
// names the component (e.g. "tokenizer.json: pre_tokenizer.pretokenizers[1]").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/json_read.hpp"

namespace lorafast::text {

using nlohmann::json;

// The "type" string of a component object.
const std::string& component_type(const json& component, const std::string& where);

// An optional field: `fallback` when absent or null.
bool bool_field(const json& object, std::string_view key, bool fallback, const std::string& where);
std::string string_field(const json& object, std::string_view key, std::string_view fallback,
                         const std::string& where);
std::int64_t integer_field(const json& object, std::string_view key, std::int64_t fallback, std::int64_t lo,
                           std::int64_t hi, const std::string& where);

// A string that is exactly one code point (a Rust `char` field).
char32_t char_field(const json& object, std::string_view key, const std::string& where);

// Metaspace's "prepend_scheme" ("always", "first" or "never"; default "always"),
// with the legacy "add_prefix_space": false meaning "never".
std::string prepend_scheme_field(const json& component, const std::string& where);

// PCRE2 source matching `literal` exactly.
std::string regex_escape(std::string_view literal);
// A pattern {"String": s} or {"Regex": r} as PCRE2 source.
std::string pattern_field(const json& object, std::string_view key, const std::string& where);

// "<where>: <key>" and "<where>.<key>[i]" for messages.
std::string field_name(const std::string& where, std::string_view key);
std::string item_name(const std::string& where, std::string_view key, std::size_t index);

}  // namespace lorafast::text
