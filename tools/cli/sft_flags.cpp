#include "sft_flags.hpp"

#include <filesystem>

namespace lorafast::cli {

void SftFlags::add_to(CLI::App& c, bool with_packing) {
  c.add_option("--chat-template", chat_template,
               "Jinja chat template file (default: chat_template.jinja, else tokenizer_config.json's chat_template)");
  c.add_option("--completion-only-loss", completion_only_loss,
               "true (default): prompt-completion data trains on the completion only; false: on everything")
      ->check(CLI::IsMember({"true", "false"}));
  c.add_flag("--assistant-only-loss", assistant_only_loss,
             "Train only on the template's {% generation %} spans (conversational data)");
  if (!with_packing) return;
  c.add_option("--packing", packing,
               "Instruction data in rows of --seq-len tokens: bfd (best-fit decreasing as TRL packs, each example "
               "attending only to itself, positions from 0) | wrapped (concatenated and cut every "
               "--seq-len tokens, attention across examples) | none (one example per row, padded per batch); "
               "default bfd, for prepare none")
      ->check(CLI::IsMember({"bfd", "wrapped", "none"}));
}

Packing SftFlags::packing_mode(Packing fallback) const {
  return packing.empty() ? fallback : *parse_packing(packing);
}

SftOptions SftFlags::options(std::int64_t seq_len, Packing packing) const {
  SftOptions o;
  o.seq_len = seq_len;
  o.assistant_only_loss = assistant_only_loss;
  if (!completion_only_loss.empty()) o.completion_only_loss = completion_only_loss == "true";
  if (!chat_template.empty()) o.chat_template = chat_template;
  o.packing = packing;
  return o;
}

bool is_jsonl_data(const std::string& data) {
  return data.ends_with(".jsonl") || std::filesystem::is_directory(data);
}

}  // namespace lorafast::cli
