// `lorafast tokenize`: the ids of a text file under a Hugging Face tokenizer.json,
// one per line or as {"ids": [...]}, and with --decode the exact text of a file of
// ids (INTERFACE.md "Tokenizers and generation"). Bytes that are not UTF-8 are read
// as U+FFFD, as Python's decode(errors="replace") reads them.
#include <charconv>
#include <chrono>
#include <cstdio>
#include <memory>

#include "commands.hpp"
#include "lorafast/error.hpp"
#include "lorafast/tokenizer.hpp"

namespace lorafast::cli {
namespace {

struct TokenizeFlags {
  std::string tokenizer, model, in;
  bool json = false, decode = false, time = false;
};

void print(std::string_view bytes) { std::fwrite(bytes.data(), 1, bytes.size(), stdout); }

void print_ids(const std::vector<std::int32_t>& ids, bool json) {
  std::string out = json ? "{\"ids\": [" : "";
  char digits[16];
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (json && i > 0) out += ", ";
    out.append(digits, std::to_chars(digits, digits + sizeof digits, ids[i]).ptr);
    if (!json) out += '\n';
  }
  if (json) out += "]}\n";
  print(out);
}

void run(const TokenizeFlags& f) {
  LF_CHECK(f.tokenizer.empty() != f.model.empty(), ErrorKind::usage,
           "give the tokenizer as --tokenizer FILE or --model DIR (one of them)");
  LF_CHECK(!(f.decode && f.json), ErrorKind::usage, "--json formats encoded ids; --decode prints text");
  const Tokenizer tokenizer = f.model.empty() ? Tokenizer::from_file(f.tokenizer) : Tokenizer::from_model_dir(f.model);
  auto start = std::chrono::steady_clock::now();
  const auto report = [&](std::size_t bytes, std::size_t tokens) {
    if (!f.time) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "lorafast: tokenize: %s %zu bytes, %zu tokens in %.6f s (%.0f tokens/s)\n",
                 f.decode ? "decoded" : "encoded", bytes, tokens, s, tokens / s);
  };
  if (f.decode) {
    const std::vector<std::int32_t> ids = read_id_file(f.in);
    start = std::chrono::steady_clock::now();
    std::string text;
    try {
      text = tokenizer.decode(ids);
    } catch (const Error& e) {
      throw Error(e.kind(), cat(f.in, ": ", e.what()));
    }
    report(text.size(), ids.size());
    print(text);
    return;
  }
  const std::string text = read_text_to_encode(f.in);
  start = std::chrono::steady_clock::now();
  const std::vector<std::int32_t> ids = tokenizer.encode(text);
  report(text.size(), ids.size());
  print_ids(ids, f.json);
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto flags = std::make_shared<TokenizeFlags>();
  auto* cmd = app.add_subcommand("tokenize", "Encode a text file with a Hugging Face tokenizer.json, or decode ids");
  auto* tokenizer = cmd->add_option("--tokenizer", flags->tokenizer, "tokenizer.json file");
  cmd->add_option("--model", flags->model, "Model directory holding tokenizer.json (and tokenizer_config.json)")
      ->excludes(tokenizer);
  cmd->add_option("--in", flags->in, "Text to encode, or with --decode ids (one per line, or {\"ids\": [...]})")
      ->required();
  cmd->add_flag("--json", flags->json, "Print {\"ids\": [...]} instead of one id per line");
  cmd->add_flag("--decode", flags->decode, "Print the text of the ids in --in exactly (no newline added)");
  cmd->add_flag("--time", flags->time, "Print the time of the encode or decode call on stderr");
  add_threads_option(*cmd);
  cmd->callback([flags] { run(*flags); });
}

}  // namespace lorafast::cli
