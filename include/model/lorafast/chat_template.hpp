// Chat templates: the Jinja2 subset that models' chat templates use, rendered as
// transformers' apply_chat_template renders them (sandboxed Jinja2 with trim_blocks,
// lstrip_blocks, loop controls, tojson without HTML escaping, raise_exception,
// strftime_now, and the {% generation %} blocks that mark the assistant's text).
// A template that uses a construct outside the subset is rejected with the line
// naming it, never rendered differently. Rendering is bounded (output, loop
// iterations, call depth); every error is Error(bad_input) "<origin>:<line>: ...".
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace lorafast {

class Tokenizer;

namespace chat {
struct Program;
}

struct ChatTemplateLimits {
  std::size_t max_output_bytes = 64u << 20;      // any string the template builds, and the output
  std::uint64_t max_loop_iterations = 1'000'000;  // loop iterations and list items, in all
  int max_call_depth = 100;                       // nested macro calls
};

struct RenderedChat {
  std::string text;
  // Byte ranges [begin, end) of `text` that {% generation %} blocks produced, in
  // order, as transformers' AssistantTracker records them (it counts the output
  // already yielded at the outermost level, so a block inside a macro is placed as
  // transformers places it).
  std::vector<std::pair<std::size_t, std::size_t>> generation;
};

class ChatTemplate {
 public:
  // Parses `source`; `origin` (a file name) starts every message.
  static ChatTemplate parse(std::string_view source, const std::string& origin, ChatTemplateLimits limits = {});
  static ChatTemplate from_file(const std::filesystem::path& path, ChatTemplateLimits limits = {});

  // Renders with the members of `variables` (a JSON object) as the template's
  // variables, e.g. messages, add_generation_prompt, tools, bos_token.
  RenderedChat render(const nlohmann::ordered_json& variables) const;

  // Whether the template has {% generation %} blocks.
  bool marks_generation() const;
  const std::string& origin() const;

  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;
  ~ChatTemplate();

 private:
  ChatTemplate(std::shared_ptr<const chat::Program> program);
  std::shared_ptr<const chat::Program> program_;
};

// The variables transformers' apply_chat_template passes: the messages as
// tokenizer.apply_chat_template prepares them (keys whose value is null dropped;
// reasoning_content / thinking filled from any of reasoning_content, thinking,
// reasoning), tools and documents (null when absent), add_generation_prompt, and
// the special tokens (bos_token, eos_token, unk_token, sep_token, pad_token,
// cls_token, mask_token) of a tokenizer_config.json. Error(bad_input) naming
// `origin` when the messages are not a list of objects.
nlohmann::ordered_json chat_variables(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                                      const nlohmann::ordered_json& documents, bool add_generation_prompt,
                                      const nlohmann::ordered_json& tokenizer_config, const std::string& origin);

// transformers' assistant_masks: 1 for each token of `ids` (the encoding of
// `text`) that overlaps a generation range, else 0. Token boundaries are found by
// decoding (a boundary inside a character joins the tokens around it, as the
// library's offsets do); Error(bad_input) when the decoded tokens do not give back
// `text` (a normalizer changed it).
std::vector<std::int8_t> assistant_masks(const Tokenizer& tokenizer, const std::string& text,
                                         std::span<const std::int32_t> ids,
                                         const std::vector<std::pair<std::size_t, std::size_t>>& generation);

// chat_variables of the text of a conversation file: a list of messages, or
// {"messages": [...], "tools": [...], "documents": [...]}.
nlohmann::ordered_json conversation_variables(std::string_view conversation_json, const std::string& origin,
                                              const nlohmann::ordered_json& tokenizer_config,
                                              bool add_generation_prompt);

// `tokenizer_dir`/tokenizer_config.json, or an empty object without one.
nlohmann::ordered_json read_tokenizer_config(const std::filesystem::path& tokenizer_dir);

// conversation_variables of a conversation file and the tokenizer_config.json in
// `tokenizer_dir` (when there is one). Error(bad_input) naming the file at fault.
nlohmann::ordered_json read_chat_variables(const std::filesystem::path& conversation,
                                           const std::filesystem::path& tokenizer_dir, bool add_generation_prompt);

// The special token `chat_template` closes an assistant's turn with (<|im_end|>,
// <|eot_id|>, <end_of_turn>, ...): the first token after an assistant message's
// content when it is a special token of `tokenizer`; nullopt when it is not, or the
// template refuses a user-then-assistant conversation.
std::optional<std::int32_t> end_of_turn_token(const ChatTemplate& chat_template, const Tokenizer& tokenizer,
                                              const nlohmann::ordered_json& tokenizer_config);

// The chat template of a model directory: `dir`/chat_template.jinja, else the
// string "chat_template" of `dir`/tokenizer_config.json. Error(bad_input) naming
// the files when neither holds one (a list of named templates is not supported).
ChatTemplate chat_template_of_model(const std::filesystem::path& dir, ChatTemplateLimits limits = {});

}  // namespace lorafast
