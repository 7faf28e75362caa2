// `lorafast generate`: sample from a model (GPT-2 or the Llama family, and optionally
// its LoRA adapter) with a KV cache, streaming each token to stdout as soon as it is
// produced: text through the model directory's tokenizer.json when it has one (UTF-8,
// incomplete characters held back), a byte for vocab-256 models, else its id on a
// line of its own. The prompt is --prompt (tokenized, or its bytes) or the ids of
// --prompt-ids, echoed first unless --no-echo; or a chat (--chat, --messages) rendered
// by the model's chat template, of which only the answer is printed. Generation stops
// after --tokens or at an eos_token_id of config.json or generation_config.json, the
// tokenizer's eos token, or (chat) the template's end-of-turn token.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "gpt_model_flags.hpp"
#include "lorafast/chat_template.hpp"
#include "lorafast/generate.hpp"
#include "lorafast/tokenizer.hpp"
#include "text_stream.hpp"

namespace lorafast::cli {
namespace {

struct GenerateFlags {
  GptModelFlags model;
  std::optional<std::string> prompt, prompt_ids, chat, messages;
  std::string chat_template;
  std::int64_t tokens = 200;
  SamplingOptions sampling;
  std::uint64_t seed = 0;
  bool no_echo = false, stats = false;

  bool chatting() const { return chat || messages; }
};

// --prompt-ids: integers separated by commas and/or spaces, each in [0, vocab).
Tokens parse_prompt_ids(const std::string& text, std::int64_t vocab) {
  std::string spaced = text;
  for (char& c : spaced)
    if (c == ',') c = ' ';
  std::istringstream in(spaced);
  Tokens ids;
  std::string word;
  while (in >> word) {
    std::size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    LF_CHECK(used == word.size(), ErrorKind::usage, "--prompt-ids: '", word, "' is not a token id");
    LF_CHECK(id >= 0 && id < vocab, ErrorKind::usage, "--prompt-ids: token ", id, " is outside the vocabulary [0, ",
             vocab, ")");
    ids.push_back(static_cast<std::int32_t>(id));
  }
  LF_CHECK(!ids.empty(), ErrorKind::usage, "--prompt-ids is empty: generation needs at least one token");
  return ids;
}

// The eos_token_id of config.json and of generation_config.json (which transformers'
// generate() follows): each a number, a list of numbers, null or absent.
std::vector<std::int32_t> eos_token_ids(const std::string& model_dir) {
  std::vector<std::int32_t> ids;
  for (const char* name : {"/config.json", "/generation_config.json"}) {
    const std::string path = model_dir + name;
    std::ifstream in(path);
    const auto config = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    const auto it = config.is_object() ? config.find("eos_token_id") : config.end();
    if (!config.is_object() || it == config.end() || it->is_null()) continue;
    const auto list = it->is_array() ? *it : nlohmann::json::array({*it});
    for (const auto& id : list) {
      LF_CHECK(id.is_number_integer(), ErrorKind::bad_input, path, ": eos_token_id must be an integer or a list of "
               "integers, got ", it->dump());
      ids.push_back(id.get<std::int32_t>());
    }
  }
  return ids;
}

// --chat or --messages rendered with the chat template, its generation prompt open,
// and tokenized as apply_chat_template does (no special tokens added); the
// template's end-of-turn token joins `eos`.
Tokens chat_prompt(const GenerateFlags& f, const Tokenizer& tokenizer, std::vector<std::int32_t>& eos) {
  const std::filesystem::path dir = f.model.model;
  const ChatTemplate chat_template =
      f.chat_template.empty() ? chat_template_of_model(dir) : ChatTemplate::from_file(f.chat_template);
  const auto config = read_tokenizer_config(dir);
  const auto variables =
      f.chat ? conversation_variables(nlohmann::json::array({{{"role", "user"}, {"content", *f.chat}}}).dump(),
                                      "--chat", config, true)
             : read_chat_variables(*f.messages, dir, true);
  if (const auto end = end_of_turn_token(chat_template, tokenizer, config)) eos.push_back(*end);
  Tokens ids = tokenizer.encode(chat_template.render(variables).text);
  LF_CHECK(!ids.empty(), ErrorKind::usage, "the chat template renders no tokens");
  return ids;
}

// The model directory's tokenizer, when it has a tokenizer.json.
std::optional<Tokenizer> model_tokenizer(const std::string& model_dir) {
  if (!model_has_tokenizer(model_dir)) return std::nullopt;
  return Tokenizer::from_model_dir(model_dir);
}

Tokens prompt_tokens(const GenerateFlags& f, const std::optional<Tokenizer>& tokenizer, std::int64_t vocab,
                     std::vector<std::int32_t>& eos) {
  if (f.prompt_ids) return parse_prompt_ids(*f.prompt_ids, vocab);
  if (!tokenizer) return byte_tokens(*f.prompt);
  Tokens ids = f.chatting() ? chat_prompt(f, *tokenizer, eos) : tokenizer->encode(*f.prompt);
  LF_CHECK(!ids.empty(), ErrorKind::usage, "--prompt gives no tokens");
  for (std::int32_t id : ids)
    LF_CHECK(id < vocab, ErrorKind::bad_input, f.model.model, "/tokenizer.json: token ", id, " of the ",
             f.chatting() ? "chat" : "--prompt", " is outside the model's vocabulary [0, ", vocab, ")");
  return ids;
}

template <class W, class T = typename W::value_type>
void run_model(const GenerateFlags& f, const W& weights) {
  const auto adapter = load_optional_adapter<T>(f.model.adapter, weights.config);
  const std::optional<Tokenizer> tokenizer = f.prompt || f.chatting() ? model_tokenizer(f.model.model) : std::nullopt;
  LF_CHECK(tokenizer || !f.chatting(), ErrorKind::cannot_meet, f.model.model,
           ": no tokenizer.json, which --chat and --messages need");
  const bool bytes = !tokenizer && weights.config.vocab_size == byte_vocab_size;
  GenerateOptions options;
  options.eos = eos_token_ids(f.model.model);
  if (tokenizer && tokenizer->eos_id()) options.eos.push_back(*tokenizer->eos_id());
  const Tokens prompt = prompt_tokens(f, tokenizer, weights.config.vocab_size, options.eos);
  const std::int64_t positions = generation_positions(static_cast<std::int64_t>(prompt.size()), f.tokens);
  const std::int64_t most = max_decode_positions(weights.config);
  LF_CHECK(positions <= most, ErrorKind::usage, "--tokens ", f.tokens, " after a ", prompt.size(),
           "-token prompt needs ", positions, " positions; the model has ", most,
           " (--positions extends a model's table)");
  std::optional<TextStream> text;
  if (tokenizer) text.emplace(*tokenizer, stdout);
  auto put = [&](std::int32_t token) {
    // A chat's answer ends at its end-of-turn or eos token, which is not part of it.
    if (f.chatting() && std::find(options.eos.begin(), options.eos.end(), token) != options.eos.end()) return;
    if (text) text->put(token);
    else if (bytes) std::fputc(token, stdout);
    else std::printf("%d\n", token);
    std::fflush(stdout);
  };
  const bool echo = !f.no_echo && !f.chatting();
  if (text) text->start(prompt, echo);
  else if (echo)
    for (std::int32_t token : prompt) put(token);
  options.max_tokens = f.tokens;
  options.sampling = f.sampling;
  options.seed = f.seed;
  const GenerateResult r = generate(weights, adapter ? &*adapter : nullptr, prompt, options, put);
  if (text) text->finish();
  if ((bytes || text) && ::isatty(STDOUT_FILENO)) std::fputc('\n', stdout);
  if (f.stats) {
    const auto n = static_cast<double>(r.tokens.size());
    const double total = r.prefill_seconds + r.decode_seconds;
    std::fprintf(stderr,
                 "lorafast: generated %zu tokens in %.3f s, %.1f tokens/s (prompt of %zu tokens and the first token "
                 "%.3f s, then %.1f tokens/s)%s\n",
                 r.tokens.size(), total, total > 0 ? n / total : 0.0, prompt.size(), r.prefill_seconds,
                 r.decode_seconds > 0 ? (n - 1) / r.decode_seconds : 0.0, r.stopped_at_eos ? ", stopped at eos" : "");
  }
}

template <class T>
void run(const GenerateFlags& f) {
  f.sampling.validate();
  LF_CHECK(f.prompt || f.prompt_ids || f.chatting(), ErrorKind::usage,
           "give --prompt TEXT, --prompt-ids IDS, --chat MESSAGE or --messages FILE");
  LF_CHECK(!f.chat || !f.chat->empty(), ErrorKind::usage, "--chat is empty");
  LF_CHECK(!f.prompt || !f.prompt->empty(), ErrorKind::usage,
           "--prompt is empty: generation needs at least one byte of context");
  const bool text = (f.prompt || f.chatting()) && model_has_tokenizer(f.model.model);
  with_model_for_data<T>(f.model, f.prompt && !text ? DataFormat::bytes : DataFormat::int32,
                         [&](const auto& weights) { run_model(f, weights); });
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto flags = std::make_shared<GenerateFlags>();
  auto* cmd = app.add_subcommand("generate", "Sample from a model (+ adapter) with a KV cache, streamed to stdout");
  flags->model.add_to(*cmd, /*with_adapter=*/true);
  auto* prompt = cmd->add_option("--prompt", flags->prompt, "Text to continue: tokenized by the model's "
                                                            "tokenizer.json, else its bytes (vocab-256 models)");
  auto* ids = cmd->add_option("--prompt-ids", flags->prompt_ids, "Token ids to continue, separated by commas or spaces; the "
                                                     "output is then ids too, one per line, unless the vocabulary "
                                                     "is bytes")->excludes(prompt);
  auto* chat = cmd->add_option("--chat", flags->chat, "A user message: the model's chat template renders it with "
                                                      "the assistant's turn opened; the answer is streamed and "
                                                      "stops at the template's end-of-turn token or an eos id")
                   ->excludes(prompt)
                   ->excludes(ids);
  cmd->add_option("--messages", flags->messages, "A conversation file (a JSON list of messages, or {\"messages\", "
                                                 "\"tools\", \"documents\"}) answered as --chat answers")
      ->excludes(prompt)
      ->excludes(ids)
      ->excludes(chat);
  cmd->add_option("--chat-template", flags->chat_template, "Jinja chat template file for --chat and --messages "
                                                           "(default: the model's)");
  cmd->add_option("--tokens", flags->tokens, "Tokens to generate (default 200); prompt + tokens - 1 must fit the "
                                             "model's positions")->check(non_negative);
  cmd->add_option("--temperature", flags->sampling.temperature, "Softmax temperature; 0 = greedy (default 1)")
      ->check(non_negative);
  cmd->add_option("--top-k", flags->sampling.top_k, "Sample among the k most likely tokens; 0 = all (default)")
      ->check(non_negative);
  cmd->add_option("--top-p", flags->sampling.top_p, "Then among the fewest most likely tokens of total probability "
                                                    ">= P (nucleus; default 1 = all)");
  cmd->add_flag("--greedy", flags->sampling.greedy, "Argmax decoding (the first largest logit), no sampling");
  cmd->add_option("--seed", flags->seed, "Sampling seed (default 0): same seed, same text");
  cmd->add_flag("--no-echo", flags->no_echo, "Print only the generated tokens, not the prompt");
  cmd->add_flag("--stats", flags->stats, "Report the tokens/s on stderr at the end");
  add_threads_option(*cmd);
  cmd->callback([flags] { flags->model.dtype == "f64" ? run<double>(*flags) : run<float>(*flags); });
}

}  // namespace lorafast::cli
