// tokenizer.json "post_processor" for one sequence, as the library's encode(text,
// add_special_tokens=True) applies it: the special tokens TemplateProcessing's
// "single" template, BertProcessing and RobertaProcessing put before and after the
// sequence; ByteLevel adds none; Sequence applies each in turn.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "text/component_json.hpp"

namespace lorafast::text {

struct PostProcessor {
  std::vector<std::int32_t> before, after;
  // The type of a post-processor not supported here (then `before` and `after`
  // are not known), empty otherwise: tokenizers that have one still encode
  // without special tokens.
  std::string unsupported;
};

PostProcessor parse_post_processor(const json& component, const std::string& where);

}  // namespace lorafast::text
