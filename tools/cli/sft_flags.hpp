// The instruction-data flags shared by `prepare`, `finetune` and `eval`: the chat
// template, which tokens carry labels, and (finetune, eval) packing.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "lorafast/sft_rows.hpp"

namespace lorafast::cli {

struct SftFlags {
  std::string chat_template, completion_only_loss, packing;
  bool assistant_only_loss = false;

  // --chat-template, --completion-only-loss, --assistant-only-loss; with `packing` --packing.
  void add_to(CLI::App& command, bool packing);
  // --packing, else `fallback`.
  Packing packing_mode(Packing fallback) const;
  SftOptions options(std::int64_t seq_len, Packing packing) const;
};

// `data` is instruction data: a .jsonl file or a directory (of them).
bool is_jsonl_data(const std::string& data);

}  // namespace lorafast::cli
