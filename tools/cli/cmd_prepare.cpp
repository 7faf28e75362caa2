// `lorafast prepare`: instruction data (JSONL) tokenized and labelled as TRL's
// SFTTrainer prepares it (INTERFACE.md "Instruction data"), written as JSON lines of
// {"input_ids", "labels", "position_ids", "seq_lengths"}; the summary on stdout.
#include <cstdio>
#include <memory>

#include "commands.hpp"
#include "lorafast/instruction_data.hpp"

namespace lorafast::cli {
namespace {

struct PrepareFlags {
  std::string model, data, out, chat_template, completion_only_loss;
  std::int64_t seq_len = 1024;
  bool assistant_only_loss = false;
};

void run(const PrepareFlags& f) {
  SftOptions options;
  options.seq_len = f.seq_len;
  options.assistant_only_loss = f.assistant_only_loss;
  if (!f.completion_only_loss.empty()) options.completion_only_loss = f.completion_only_loss == "true";
  if (!f.chat_template.empty()) options.chat_template = f.chat_template;
  const SftData data = prepare_instruction_data(f.data, f.model, options);
  write_sft_jsonl(f.out, data.examples);
  std::printf("prepare: %s\n", data.summary.line(f.seq_len).c_str());
}

}  // namespace

void add_prepare_command(CLI::App& app) {
  auto flags = std::make_shared<PrepareFlags>();
  auto* cmd = app.add_subcommand("prepare", "Tokenize and label instruction data (JSONL) as TRL's SFTTrainer does");
  cmd->add_option("--model", flags->model, "Model directory (tokenizer.json, tokenizer_config.json, chat template)")
      ->required();
  cmd->add_option("--data", flags->data, "A .jsonl file, or a directory of them")->required();
  cmd->add_option("--out", flags->out, "Output file: one JSON line per example")->required();
  cmd->add_option("--seq-len", flags->seq_len, "Truncate examples to this many tokens (keeps the start)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 31, "an integer in [1, 2^31]"));
  cmd->add_option("--chat-template", flags->chat_template,
                  "Jinja chat template file (default: chat_template.jinja, else tokenizer_config.json's chat_template)");
  cmd->add_option("--completion-only-loss", flags->completion_only_loss,
                  "true (default): prompt-completion data trains on the completion only; false: on everything")
      ->check(CLI::IsMember({"true", "false"}));
  cmd->add_flag("--assistant-only-loss", flags->assistant_only_loss,
                "Train only on the template's {% generation %} spans (conversational data)");
  add_threads_option(*cmd);
  cmd->callback([flags] { run(*flags); });
}

}  // namespace lorafast::cli
