// tokenizer.json "post_processor" (post_processor.hpp).
#include "text/post_processor.hpp"

#include <climits>

#include "lorafast/error.hpp"

namespace lorafast::text {

namespace {

constexpr auto bad = ErrorKind::bad_input;

std::int32_t token_id(const json& pair, const std::string& where) {  // ["[CLS]", 101]
  LF_CHECK(pair.is_array() && pair.size() == 2, bad, where, " must be [token, id]");
  return static_cast<std::int32_t>(json_integer(pair[1], 0, INT32_MAX, where));
}

// TemplateProcessing: "single" is a list of {"SpecialToken": {"id": name}} and one
// {"Sequence": {"id": "A"}}; each special token's ids are in "special_tokens".
void add_template(const json& component, const std::string& where, PostProcessor& out) {
  const json& single = require_field(component, "single", where);
  LF_CHECK(single.is_array(), bad, field_name(where, "single"), " must be a list");
  const json& specials = require_field(component, "special_tokens", where);
  bool sequence = false;
  for (std::size_t i = 0; i < single.size(); ++i) {
    const std::string item = item_name(where, "single", i);
    if (find_field(single[i], "Sequence") != nullptr) {
      LF_CHECK(!sequence, bad, item, ": a second sequence in a single-sequence template");
      sequence = true;
      continue;
    }
    const std::string& name = json_string(require_field(require_field(single[i], "SpecialToken", item), "id", item),
                                          field_name(item, "id"));
    const json& special = require_field(specials, name, field_name(where, "special_tokens"));
    const json& ids = require_field(special, "ids", field_name(where, "special_tokens"));
    LF_CHECK(ids.is_array(), bad, field_name(where, "special_tokens"), ": 'ids' must be a list");
    for (const json& id : ids)
      (sequence ? out.after : out.before).push_back(static_cast<std::int32_t>(json_integer(id, 0, INT32_MAX, item)));
  }
  LF_CHECK(sequence, bad, field_name(where, "single"), ": no sequence");
}

}  // namespace

PostProcessor parse_post_processor(const json& component, const std::string& where) {
  PostProcessor out;
  if (component.is_null()) return out;
  const std::string& type = component_type(component, where);
  if (type == "ByteLevel") return out;
  if (type == "TemplateProcessing") {
    add_template(component, where, out);
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    out.before.push_back(token_id(require_field(component, "cls", where), field_name(where, "cls")));
    out.after.push_back(token_id(require_field(component, "sep", where), field_name(where, "sep")));
  } else if (type == "Sequence") {  // each processor wraps what the previous ones made
    const json& list = require_field(component, "processors", where);
    LF_CHECK(list.is_array(), bad, field_name(where, "processors"), " must be a list");
    for (std::size_t i = 0; i < list.size(); ++i) {
      PostProcessor p = parse_post_processor(list[i], item_name(where, "processors", i));
      if (!p.unsupported.empty()) return p;
      out.before.insert(out.before.begin(), p.before.begin(), p.before.end());
      out.after.insert(out.after.end(), p.after.begin(), p.after.end());
    }
  } else {
    out.unsupported = type;
  }
  return out;
}

}  // namespace lorafast::text
