// tokenizer.json "decoder": ByteLevel, ByteFallback, Metaspace, Fuse, Strip,
// Replace, BPEDecoder and Sequence, each the library's decode_chain over the list of
// token strings; the decoded text is the result joined with no separator.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "text/component_json.hpp"

namespace lorafast::text {

using Decoder = std::function<void(std::vector<std::string>&)>;

// The decoder described by `component` (an empty function for null: then the
// tokens are joined with spaces, as the library does).
Decoder parse_decoder(const json& component, const std::string& where);

}  // namespace lorafast::text
