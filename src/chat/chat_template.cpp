// ChatTemplate: parse once, render per conversation; errors as Error(bad_input)
// "<origin>:<line>: ...". chat_variables and chat_template_of_model reproduce what
// transformers' apply_chat_template passes to the template and where it finds it.
#include "lorafast/chat_template.hpp"

#include <algorithm>

#include "chat/render.hpp"
#include "core/json_read.hpp"
#include "core/text_file.hpp"
#include "lorafast/error.hpp"
#include "lorafast/tokenizer.hpp"

namespace lorafast {

namespace {

constexpr std::uint64_t max_template_bytes = 16u << 20;
constexpr std::uint64_t max_conversation_bytes = 1ull << 30;

[[noreturn]] void fail(const std::string& origin, const chat::TemplateError& e) {
  throw Error(ErrorKind::bad_input, cat(origin, ":", e.line, ": ", e.what()));
}

bool has_generation(const chat::Body& body) {
  for (const chat::StmtPtr& s : body) {
    if (s->kind == chat::StmtKind::generation) return true;
    if (has_generation(s->body) || has_generation(s->else_body)) return true;
    for (const auto& [c, b] : s->branches)
      if (has_generation(b)) return true;
  }
  return false;
}

}  // namespace

ChatTemplate::ChatTemplate(std::shared_ptr<const chat::Program> program) : program_(std::move(program)) {}
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

ChatTemplate ChatTemplate::parse(std::string_view source, const std::string& origin, ChatTemplateLimits limits) {
  auto program = std::make_shared<chat::Program>();
  program->origin = origin;
  program->limits = limits;
  try {
    program->body = chat::parse(source);
  } catch (const chat::TemplateError& e) {
    fail(origin, e);
  }
  program->marks_generation = has_generation(program->body);
  return ChatTemplate(std::move(program));
}

ChatTemplate ChatTemplate::from_file(const std::filesystem::path& path, ChatTemplateLimits limits) {
  return parse(read_text_file(path, max_template_bytes), path.string(), limits);
}

RenderedChat ChatTemplate::render(const nlohmann::ordered_json& variables) const {
  LF_CHECK(variables.is_object(), ErrorKind::bad_input, program_->origin, ": the template's variables must be an object");
  try {
    return chat::render(*program_, variables);
  } catch (const chat::TemplateError& e) {
    fail(program_->origin, e);
  }
}

bool ChatTemplate::marks_generation() const { return program_->marks_generation; }
const std::string& ChatTemplate::origin() const { return program_->origin; }

nlohmann::ordered_json chat_variables(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                                      const nlohmann::ordered_json& documents, bool add_generation_prompt,
                                      const nlohmann::ordered_json& tokenizer_config, const std::string& origin) {
  using ojson = nlohmann::ordered_json;
  LF_CHECK(messages.is_array(), ErrorKind::bad_input, origin, ": the messages must be a list of objects");
  LF_CHECK(!messages.empty(), ErrorKind::bad_input, origin, ": the conversation is empty");
  ojson variables = ojson::object();
  // Special tokens first: transformers passes them, then the call's own arguments.
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
    const auto it = tokenizer_config.is_object() ? tokenizer_config.find(key) : tokenizer_config.end();
    if (it == tokenizer_config.end() || it->is_null()) continue;
    if (it->is_string()) variables[key] = *it;
    else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) variables[key] = (*it)["content"];
    else throw Error(ErrorKind::bad_input, cat(origin, ": tokenizer_config.json: '", key, "' must be a string or {\"content\": ...}"));
  }
  ojson chat = ojson::array();
  std::size_t index = 0;
  for (const ojson& message : messages) {
    LF_CHECK(message.is_object(), ErrorKind::bad_input, origin, ": message ", index, " is not an object");
    ojson kept = ojson::object();
    for (const auto& [k, v] : message.items())
      if (!v.is_null()) kept[k] = v;
    const ojson* reasoning = nullptr;
    for (const char* key : {"reasoning_content", "thinking", "reasoning"})
      if (kept.contains(key)) {
        reasoning = &kept[key];
        break;
      }
    if (reasoning != nullptr) {  // {"thinking": r, **message, "reasoning_content": r}
      ojson aliased = ojson::object();
      aliased["thinking"] = *reasoning;
      for (const auto& [k, v] : kept.items()) aliased[k] = v;
      aliased["reasoning_content"] = *reasoning;
      kept = std::move(aliased);
    }
    chat.push_back(std::move(kept));
    ++index;
  }
  variables["messages"] = std::move(chat);
  variables["tools"] = tools;
  variables["documents"] = documents;
  variables["add_generation_prompt"] = add_generation_prompt;
  return variables;
}

nlohmann::ordered_json conversation_variables(std::string_view conversation_json, const std::string& origin,
                                              const nlohmann::ordered_json& tokenizer_config,
                                              bool add_generation_prompt) {
  using ojson = nlohmann::ordered_json;
  const ojson doc = parse_ordered_json(conversation_json, origin);
  ojson messages = doc, tools = nullptr, documents = nullptr;
  if (doc.is_object()) {
    for (const auto& [k, v] : doc.items())
      LF_CHECK(k == "messages" || k == "tools" || k == "documents", ErrorKind::bad_input, origin, ": unknown key ",
               quote(k), " (a conversation has messages, tools and documents)");
    LF_CHECK(doc.contains("messages"), ErrorKind::bad_input, origin, ": missing 'messages'");
    messages = doc["messages"];
    if (doc.contains("tools")) tools = doc["tools"];
    if (doc.contains("documents")) documents = doc["documents"];
  }
  LF_CHECK(tools.is_null() || tools.is_array(), ErrorKind::bad_input, origin, ": 'tools' must be a list");
  LF_CHECK(documents.is_null() || documents.is_array(), ErrorKind::bad_input, origin, ": 'documents' must be a list");
  return chat_variables(messages, tools, documents, add_generation_prompt, tokenizer_config, origin);
}

nlohmann::ordered_json read_tokenizer_config(const std::filesystem::path& tokenizer_dir) {
  const auto config_path = tokenizer_dir / "tokenizer_config.json";
  if (!std::filesystem::exists(config_path)) return nlohmann::ordered_json::object();
  return parse_ordered_json(read_text_file(config_path, max_template_bytes * 4), config_path.string());
}

nlohmann::ordered_json read_chat_variables(const std::filesystem::path& conversation,
                                           const std::filesystem::path& tokenizer_dir, bool add_generation_prompt) {
  return conversation_variables(read_text_file(conversation, max_conversation_bytes), conversation.string(),
                                read_tokenizer_config(tokenizer_dir), add_generation_prompt);
}

std::optional<std::int32_t> end_of_turn_token(const ChatTemplate& chat_template, const Tokenizer& tokenizer,
                                              const nlohmann::ordered_json& tokenizer_config) {
  static constexpr std::string_view probe = "lorafast-end-of-turn-probe";
  using ojson = nlohmann::ordered_json;
  const ojson messages = ojson::array({ojson{{"role", "user"}, {"content", "Hi"}},
                                       ojson{{"role", "assistant"}, {"content", probe}}});
  RenderedChat rendered;
  try {
    rendered = chat_template.render(chat_variables(messages, nullptr, nullptr, false, tokenizer_config, "probe"));
  } catch (const Error&) {
    return std::nullopt;  // a template that wants other turns: no end-of-turn token known
  }
  const std::size_t at = rendered.text.find(probe);
  if (at == std::string::npos) return std::nullopt;
  const auto ids = tokenizer.encode(std::string_view(rendered.text).substr(at + probe.size()));
  if (ids.empty() || !tokenizer.is_special(ids.front())) return std::nullopt;
  return ids.front();
}

ChatTemplate chat_template_of_model(const std::filesystem::path& dir, ChatTemplateLimits limits) {
  const auto jinja = dir / "chat_template.jinja";
  if (std::filesystem::exists(jinja)) return ChatTemplate::from_file(jinja, limits);
  const auto config_path = dir / "tokenizer_config.json";
  LF_CHECK(std::filesystem::exists(config_path), ErrorKind::bad_input, dir.string(),
           ": no chat template (neither chat_template.jinja nor tokenizer_config.json)");
  const nlohmann::json config = parse_json(read_text_file(config_path, max_template_bytes * 4), config_path.string());
  const nlohmann::json* source = find_field(config, "chat_template");
  LF_CHECK(source != nullptr && !source->is_null(), ErrorKind::bad_input, config_path.string(),
           ": no 'chat_template' (and no chat_template.jinja beside it)");
  LF_CHECK(source->is_string(), ErrorKind::bad_input, config_path.string(),
           ": 'chat_template' must be a string (lists of named templates are not supported)");
  return ChatTemplate::parse(source->get<std::string>(), config_path.string() + ": chat_template", limits);
}

}  // namespace lorafast
