// tokenizer.json "pre_tokenizer": ByteLevel, Split, Metaspace, Digits, Punctuation,
// Whitespace, WhitespaceSplit, CharDelimiterSplit and Sequence. Each splits the
// pieces that are not added tokens into the words the model encodes one by one.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "text/component_json.hpp"
#include "text/piece.hpp"

namespace lorafast::text {

// Replaces `pieces` by their split (added tokens pass through, empty pieces go).
using PreTokenizer = std::function<void(std::vector<Piece>&)>;

// The pre-tokenizer described by `component` (an empty function for null).
PreTokenizer parse_pre_tokenizer(const json& component, const std::string& where);

}  // namespace lorafast::text
