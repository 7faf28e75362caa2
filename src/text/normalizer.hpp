// tokenizer.json "normalizer": NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents,
// Prepend, Replace, ByteLevel and Sequence, applied to each piece of text between
// added tokens.
#pragma once

#include <functional>
#include <string>

#include "text/component_json.hpp"

namespace lorafast::text {

// Rewrites a piece of valid UTF-8 in place.
using Normalizer = std::function<void(std::string&)>;

// The normalizer described by `component` (an empty function for null).
Normalizer parse_normalizer(const json& component, const std::string& where);

}  // namespace lorafast::text
