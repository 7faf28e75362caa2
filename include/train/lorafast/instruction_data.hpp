// Instruction data (INTERFACE.md "Instruction data"): JSON-lines files in the
// dataset formats of TRL's SFTTrainer, rendered, tokenized and labelled as TRL 1.x's
// SFTTrainer prepares them with packing off:
//   {"text"}                                 eos appended if missing, tokenized with the
//                                            post-processor's special tokens (as
//                                            tokenizer(text)), every token trained
//   {"prompt", "completion"} (strings)       eos appended to the completion; labels after
//                                            the prompt (completion-only loss by default)
//   {"prompt", "completion"} (messages)      prompt rendered with the generation prompt,
//                                            prompt + completion without; labels after it
//   {"messages": [{"role", "content"}]}      the whole conversation rendered
//   {"conversations": [{"from", "value"}]}   ShareGPT, read as messages (human -> user,
//                                            gpt -> assistant, other names kept)
// Conversational examples may carry "tools" (a list, or its JSON text) and
// "chat_template_kwargs" (more template variables, as TRL passes them). The format is
// detected per file from its first example; a file holding another format is refused.
// Every error is Error(bad_input) (or usage, for a flag the data cannot take) starting
// "<file>:<line>: ".
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "lorafast/gpt_loss.hpp"

namespace lorafast {

enum class InstructionFormat { text, prompt_completion, conversational_prompt_completion, messages, sharegpt };
const char* format_name(InstructionFormat format);

struct InstructionExample {
  std::string origin;  // "<file>:<line>", starts every message about the example
  InstructionFormat format = InstructionFormat::text;
  nlohmann::ordered_json input;       // the text, the prompt, or the messages (role/content)
  nlohmann::ordered_json completion;  // prompt-completion formats only
  nlohmann::ordered_json tools;       // null or a list
  nlohmann::ordered_json template_kwargs;  // null or an object: more variables for the template
  bool conversational() const;
  bool prompt_completion() const;
};

// A longer line is refused before it is held whole (a file cannot make the reader
// allocate without bound).
constexpr std::size_t max_instruction_line_bytes = 64u << 20;

// The lines of one file, in order: detects the format on the first example and
// refuses a line in another one.
class InstructionFileReader {
 public:
  explicit InstructionFileReader(std::string file) : file_(std::move(file)) {}
  // The example on line `line` (1-based) of the file, or nullopt for a blank line:
  // parse, then accept.
  std::optional<InstructionExample> read_line(std::string_view text, std::size_t line);
  // The example of one line of `file` alone (no state: lines may be parsed in
  // parallel), or nullopt for a blank line.
  static std::optional<InstructionExample> parse(std::string_view text, const std::string& file, std::size_t line);
  // `ex` (of line `line`) when it has the file's format, which its first example set.
  InstructionExample accept(InstructionExample&& ex, std::size_t line);

 private:
  std::string file_;
  std::optional<InstructionFormat> format_;
  std::size_t format_line_ = 0;
};

// Calls `each` with every example of `path`: a .jsonl file, or a directory whose
// *.jsonl files are read in name order; returns the number of files. Error(bad_input)
// naming the file when it holds no example, or naming the file and line of a bad one.
std::size_t for_each_instruction_example(const std::filesystem::path& path,
                                  const std::function<void(InstructionExample&&)>& each,
                                  std::size_t max_line_bytes = max_instruction_line_bytes);

constexpr std::int32_t ignore_label = no_target;  // a token with no loss (PyTorch's ignore_index)

// How examples become training rows (sft_rows.hpp). bfd: best-fit decreasing into
// rows of seq_len tokens, examples kept whole (longer ones truncated to seq_len);
// wrapped: the examples concatenated and cut every seq_len tokens, one document per
// row (attention crosses examples, as in TRL); none: one example per row, padded per
// batch.
enum class Packing { bfd, wrapped, none };
std::optional<Packing> parse_packing(std::string_view name);
const char* packing_name(Packing packing);

struct SftOptions {
  std::int64_t seq_len = 1024;               // truncation keeps the first seq_len tokens (TRL's max_length)
  std::optional<bool> completion_only_loss;  // default: on (it only affects prompt-completion data)
  bool assistant_only_loss = false;          // labels only in the template's {% generation %} spans
  std::optional<std::filesystem::path> chat_template;  // default: the model directory's
  // As TRL prepares them for this packing: with packing, examples without a label
  // token are kept; wrapped packing cuts the examples' concatenation instead of
  // truncating them.
  Packing packing = Packing::none;
};

// One example: its ids and, aligned with them, its labels (the id, or ignore_label);
// the model shifts them, as transformers' causal LM loss does.
struct SftExample {
  std::vector<std::int32_t> input_ids, labels;
};

struct SftSummary {
  std::int64_t files = 0, examples = 0;
  std::int64_t dropped_unlabelled = 0;  // no label token at all
  std::int64_t dropped_truncated = 0;   // none left after truncation
  std::int64_t truncated = 0;           // longer than seq_len (kept or dropped)
  std::int64_t tokens = 0, label_tokens = 0;  // of the kept examples
  // "<examples> examples in <files> files, <dropped> dropped (...), <truncated>
  //  truncated to <seq_len> tokens; <rows> kept, <tokens> tokens, <label> label tokens"
  std::string line(std::int64_t seq_len) const;
};

struct SftData {
  std::vector<SftExample> examples;  // in file order; dropped ones left out
  SftSummary summary;
};

// The library's entry point: the examples of `data` (a .jsonl file or a directory of
// them) prepared for the tokenizer in `model_dir` (tokenizer.json, tokenizer_config.json
// and the chat template, read only when the data is conversational).
SftData prepare_instruction_data(const std::filesystem::path& data, const std::filesystem::path& model_dir,
                                 const SftOptions& options);

}  // namespace lorafast
