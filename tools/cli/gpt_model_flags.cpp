#include "gpt_model_flags.hpp"

#include "commands.hpp"
#include "sft_flags.hpp"

namespace lorafast::cli {

void GptModelFlags::add_to(CLI::App& c, bool with_adapter, bool model_required) {
  auto* m = c.add_option("--model", model, "Model directory (config.json, model.safetensors; the Hugging Face GPT-2 or Llama-family layout)");
  if (model_required) m->required();
  if (with_adapter) c.add_option("--adapter", adapter, "PEFT LoRA adapter directory (e.g. finetune's --out)");
  c.add_option("--dtype", dtype,
               "Compute precision: f32 | f64 | bf16 (mixed: the frozen weights held and multiplied in bf16, "
               "sums, adapters, norms, softmax and the loss in f32)")
      ->check(CLI::IsMember({"f32", "f64", "bf16"}));
  c.add_option("--positions", positions,
               "Run sequences of up to N tokens: the position table is extended to N rows by repeating the "
               "trained ones (row t = row t mod n_positions), so the model is unchanged up to n_positions and an "
               "adapter trained with it still loads against the plain base model")
      ->check(positive);
}

void add_data_format_option(CLI::App& c, DataFormat& format) {
  c.add_option_function<std::string>(
       "--data-format", [&format](const std::string& name) { format = *parse_data_format(name); },
       "How --data holds tokens: text (tokenized by the model's tokenizer.json) | bytes (one token per "
       "byte; needs vocab_size 256) | uint16 | int32 (little-endian token ids, e.g. nanoGPT's train.bin is "
       "uint16; each < vocab_size) | jsonl (instruction examples, TRL's dataset formats) (default: jsonl for a "
       ".jsonl file or a directory, else text when the model directory has a tokenizer.json, else bytes)")
      ->check(CLI::IsMember({"text", "bytes", "uint16", "int32", "jsonl"}));
}

void add_recompute_option(CLI::App& c, Recompute& recompute) {
  c.add_option_function<std::string>(
       "--recompute",
       [&recompute](const std::string& name) {
         recompute = name == "always" ? Recompute::always : name == "never" ? Recompute::never : Recompute::automatic;
       },
       "Activations for the backward pass: never (keep every block's: fastest) | always (keep each block's input "
       "and recompute the block: one more forward pass, memory for long sequences) | auto (always when keeping "
       "every block would take over a quarter of physical memory; default). Results are identical")
      ->check(CLI::IsMember({"auto", "always", "never"}));
}

bool model_has_tokenizer(const std::string& model_dir) {
  return std::filesystem::is_regular_file(std::filesystem::path(model_dir) / "tokenizer.json");
}

void resolve_data_format(const CLI::App& command, const GptModelFlags& flags, const std::string& data,
                         DataFormat& format) {
  if (command.count("--data-format") > 0) return;
  format = is_jsonl_data(data) ? DataFormat::jsonl
           : model_has_tokenizer(flags.model) ? DataFormat::text : DataFormat::bytes;
}

Tokens read_data(const GptModelFlags& flags, const std::string& data, DataFormat format, std::int64_t vocab_size,
                 const std::optional<std::filesystem::path>& cache) {
  if (format != DataFormat::text) return read_token_file(data, format, vocab_size);
  return read_text_tokens(data, std::filesystem::path(flags.model) / "tokenizer.json", vocab_size, cache);
}

}  // namespace lorafast::cli
