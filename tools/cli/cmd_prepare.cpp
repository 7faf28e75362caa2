// `lorafast prepare`: instruction data (JSONL) tokenized and labelled as TRL's
// SFTTrainer prepares it (INTERFACE.md "Instruction data"), written as JSON lines of
// {"input_ids", "labels", "position_ids", "seq_lengths"}, one per example or, with
// --packing, per packed row; the summary on stdout.
#include <cstdio>
#include <memory>

#include "commands.hpp"
#include "sft_flags.hpp"
#include "lorafast/sft_rows.hpp"

namespace lorafast::cli {
namespace {

struct PrepareFlags {
  std::string model, data, out;
  std::int64_t seq_len = 1024;
  SftFlags sft;
};

void run(const PrepareFlags& f) {
  const Packing packing = f.sft.packing_mode(Packing::none);
  SftData data = prepare_instruction_data(f.data, f.model, f.sft.options(f.seq_len, packing));
  const SftRows rows = pack_examples(std::move(data.examples), f.seq_len, packing);
  write_sft_jsonl(f.out, rows);
  std::printf("prepare: %s; %s\n", data.summary.line(f.seq_len).c_str(), rows.line(packing, f.seq_len).c_str());
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
  flags->sft.add_to(*cmd, /*packing=*/true);
  add_threads_option(*cmd);
  cmd->callback([flags] { run(*flags); });
}

}  // namespace lorafast::cli
