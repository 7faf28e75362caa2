// `lorafast eval`: the mean next-token cross-entropy of a model (with or without a
// LoRA adapter) on a data file (text as byte tokens, or token ids: --data-format),
// over consecutive windows of T + 1 tokens with stride T (INTERFACE.md), or on
// instruction data over its label tokens. `--json` prints exactly {"loss": L, "tokens": n}.
#include <cmath>
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "gpt_model_flags.hpp"
#include "sft_flags.hpp"

namespace lorafast::cli {
namespace {

struct EvalFlags {
  GptModelFlags model;
  std::string data;
  DataFormat data_format = DataFormat::bytes;
  SftFlags sft;  // instruction data (JSONL)
  std::optional<std::int64_t> seq_len;
  std::int64_t batch = 8;
  bool json = false;
};

// `evaluate()`, its errors naming --data; with --json printed as {"loss", "tokens"}
// (and true returned: nothing more to print).
template <class Evaluate>
bool evaluated(const EvalFlags& f, EvalResult& r, Evaluate&& evaluate) {
  try {
    r = evaluate();
  } catch (const Error& e) {
    throw Error(e.kind(), cat(f.data, ": ", e.what()));
  }
  if (f.json) std::printf("%s\n", nlohmann::json{{"loss", r.loss}, {"tokens", r.tokens}}.dump().c_str());
  return f.json;
}

// Instruction data: the mean loss over the label tokens (each example's first token
// predicts nothing, as in training).
template <class W, class T = typename W::value_type>
void run_rows(const EvalFlags& f, const W& weights, const GptLora<T>* adapter) {
  const std::int64_t seq_len = f.seq_len.value_or(default_seq_len(weights.config, f.data_format));
  LF_CHECK(seq_len <= weights.config.n_positions, ErrorKind::usage, "--seq-len ", seq_len,
           " exceeds the model's n_positions ", weights.config.n_positions);
  const Packing packing = f.sft.packing_mode(Packing::bfd);
  SftData data = prepare_instruction_data(f.data, f.model.model, f.sft.options(seq_len, packing));
  const SftRows rows = pack_examples(std::move(data.examples), seq_len, packing);
  EvalResult r;
  if (evaluated(f, r, [&] { return evaluate_rows(weights, adapter, rows, 0, f.batch); })) return;
  std::printf("data: %s; %s\nloss %.6f nats/token (perplexity %.4f) over %lld label tokens\n",
              data.summary.line(seq_len).c_str(), rows.line(packing, seq_len).c_str(), r.loss, std::exp(r.loss),
              static_cast<long long>(r.tokens));
}

template <class W, class T = typename W::value_type>
void run_model(const EvalFlags& f, const W& weights) {
  const auto adapter = load_optional_adapter<T>(f.model.adapter, weights.config);
  if (f.data_format == DataFormat::jsonl) return run_rows(f, weights, adapter ? &*adapter : nullptr);
  const Tokens tokens = read_data(f.model, f.data, f.data_format, weights.config.vocab_size);
  const std::int64_t seq_len = f.seq_len.value_or(default_seq_len(weights.config, f.data_format));
  LF_CHECK(seq_len <= weights.config.n_positions, ErrorKind::usage, "--seq-len ", seq_len,
           " exceeds the model's n_positions ", weights.config.n_positions, " (--positions ", seq_len,
           " extends its position table)");
  EvalResult r;
  if (evaluated(f, r, [&] { return evaluate_windows(weights, adapter ? &*adapter : nullptr, tokens, seq_len, 0, f.batch); }))
    return;
  std::printf("loss %.6f nats/token (perplexity %.4f, %.4f bits/%s) over %lld tokens in %lld windows of %lld\n",
              r.loss, std::exp(r.loss), r.loss / std::log(2.0), f.data_format == DataFormat::bytes ? "byte" : "token",
              static_cast<long long>(r.tokens),
              static_cast<long long>(r.tokens / seq_len), static_cast<long long>(seq_len + 1));
}

template <class T>
void run(const EvalFlags& f) {
  with_model_for_data<T>(f.model, f.data_format, [&](const auto& weights) { run_model(f, weights); });
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto flags = std::make_shared<EvalFlags>();
  auto* cmd = app.add_subcommand("eval", "Mean next-token cross-entropy of a model (+ adapter) on a data file");
  flags->model.add_to(*cmd, /*with_adapter=*/true);
  cmd->add_option("--data", flags->data, "Data file: text, token ids (--data-format), or instruction examples "
                                         "(a .jsonl file or a directory: the mean loss over their label tokens)")
      ->required();
  add_data_format_option(*cmd, flags->data_format);
  flags->sft.add_to(*cmd, /*packing=*/true);
  cmd->add_option("--seq-len", flags->seq_len, "Window length T: windows of T + 1 tokens, stride T "
                                                "(default: 128, at most n_positions or --positions; instruction data: "
                                                "the row length, default 1024)")->check(positive);
  cmd->add_option("--batch", flags->batch, "Windows per forward pass (memory only; default 8)")->check(positive);
  cmd->add_flag("--json", flags->json, "Print {\"loss\": L, \"tokens\": n} as JSON");
  add_threads_option(*cmd);
  cmd->callback([flags, cmd] {
    resolve_data_format(*cmd, flags->model, flags->data, flags->data_format);
    flags->model.dtype == "f64" ? run<double>(*flags) : run<float>(*flags);
  });
}

}  // namespace lorafast::cli
