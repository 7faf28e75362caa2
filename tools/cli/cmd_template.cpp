// `lorafast template`: a conversation rendered with a model's chat template, as
// transformers' apply_chat_template renders it (INTERFACE.md "Instruction data");
// --json adds the token ids (no special tokens added) and the assistant masks of
// the template's {% generation %} blocks.
#include <charconv>
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "lorafast/chat_template.hpp"
#include "lorafast/error.hpp"
#include "lorafast/tokenizer.hpp"

namespace lorafast::cli {
namespace {

struct TemplateFlags {
  std::string model, tokenizer_dir, chat_template, messages;
  bool add_generation_prompt = false, json = false;
};

void print(std::string_view bytes) { std::fwrite(bytes.data(), 1, bytes.size(), stdout); }

void run(const TemplateFlags& f) {
  LF_CHECK(f.model.empty() != f.tokenizer_dir.empty(), ErrorKind::usage,
           "give the tokenizer's directory as --model DIR or --tokenizer-dir DIR (one of them)");
  const std::filesystem::path dir = f.model.empty() ? f.tokenizer_dir : f.model;
  const ChatTemplate chat_template =
      f.chat_template.empty() ? chat_template_of_model(dir) : ChatTemplate::from_file(f.chat_template);

  const RenderedChat rendered = chat_template.render(read_chat_variables(f.messages, dir, f.add_generation_prompt));
  if (!f.json) {
    print(rendered.text);
    return;
  }
  const Tokenizer tokenizer = Tokenizer::from_model_dir(dir);
  const std::vector<std::int32_t> ids = tokenizer.encode(rendered.text);
  std::vector<std::int8_t> masks(ids.size(), 0);
  if (!rendered.generation.empty()) masks = assistant_masks(tokenizer, rendered.text, ids, rendered.generation);
  std::string out = "{\"text\": " + nlohmann::json(rendered.text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  char digits[16];
  const auto list = [&](const char* name, const auto& values) {
    out += std::string(", \"") + name + "\": [";
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (i > 0) out += ", ";
      out.append(digits, std::to_chars(digits, digits + sizeof digits, static_cast<int>(values[i])).ptr);
    }
    out += "]";
  };
  list("input_ids", ids);
  list("assistant_masks", masks);
  out += "}\n";
  print(out);
}

}  // namespace

void add_template_command(CLI::App& app) {
  auto flags = std::make_shared<TemplateFlags>();
  auto* cmd = app.add_subcommand("template", "Render a conversation with a model's chat template");
  auto* model = cmd->add_option("--model", flags->model, "Model directory (tokenizer.json, tokenizer_config.json)");
  cmd->add_option("--tokenizer-dir", flags->tokenizer_dir, "Directory of tokenizer.json and tokenizer_config.json")
      ->excludes(model);
  cmd->add_option("--chat-template", flags->chat_template,
                  "Jinja chat template file (default: chat_template.jinja, else tokenizer_config.json's chat_template)");
  cmd->add_option("--messages", flags->messages,
                  "JSON list of messages, or {\"messages\": [...], \"tools\": [...], \"documents\": [...]}")
      ->required();
  cmd->add_flag("--add-generation-prompt", flags->add_generation_prompt, "End with the assistant's turn opened");
  cmd->add_flag("--json", flags->json, "Print {\"text\", \"input_ids\", \"assistant_masks\"}");
  add_threads_option(*cmd);
  cmd->callback([flags] { run(*flags); });
}

}  // namespace lorafast::cli
