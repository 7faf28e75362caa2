// `lorafast model-grad` (hidden, for tests and development): one forward + backward
// of a GPT-2 or Llama-family model with a PEFT adapter on a batch of token windows. Writes `loss`
// and, under each adapter tensor's own name, d loss / d that tensor. With --full
// (the adapter is then optional) it also writes d loss / d every base weight under
// its name in the model file: GPT-2's, spelt with the "transformer." prefix exactly
// when the model file is; the Llama family's Hugging Face names in nn.Linear's
// [out, in] layout.
//
// --method/--eps/--degree choose the attention per layer and head as in `finetune`
// (the LoRA gradients are then those of the surrogate loss where fast runs); --full
// computes with exact attention.
//
// The token file is text: one window of T + 1 token ids per line (whitespace
// separated, every line the same length); each window predicts its last T tokens.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "gpt_model_flags.hpp"
#include "model_flags.hpp"
#include "lorafast/gpt_loss.hpp"
#include "lorafast/llama.hpp"
#include "lorafast/safetensors.hpp"

namespace lorafast::cli {
namespace {

constexpr auto bad = ErrorKind::bad_input;
constexpr std::size_t max_token_file_bytes = 100'000'000;

struct ModelGradFlags {
  std::string model, adapter, tokens, out, dtype = "f32", method = "exact";
  double eps = 1e-3;
  std::optional<int> degree;
  bool json = false, full = false;
  Recompute recompute = Recompute::automatic;
};

std::string read_all(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  LF_CHECK(f != nullptr, bad, path, ": cannot open for reading");
  std::string text;
  char buf[65536];
  std::size_t got = 0;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0 && text.size() <= max_token_file_bytes) text.append(buf, got);
  std::fclose(f);
  LF_CHECK(text.size() <= max_token_file_bytes, bad, path, ": larger than ", max_token_file_bytes, " bytes");
  return text;
}

TokenBatch read_token_windows(const std::string& path) {
  std::istringstream lines(read_all(path));
  TokenBatch batch;
  std::string line;
  for (std::int64_t number = 1; std::getline(lines, line); ++number) {
    std::istringstream fields(line);
    std::int64_t count = 0;
    std::string field;
    while (fields >> field) {
      std::size_t used = 0;
      long long value = -1;
      try {
        value = std::stoll(field, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      LF_CHECK(used == field.size() && value >= 0 && value <= INT32_MAX, bad, path, ": line ", number, ": '", field,
               "' is not a token id");
      batch.tokens.push_back(static_cast<std::int32_t>(value));
      ++count;
    }
    if (count == 0) continue;
    if (batch.batch == 0) batch.seq_len = count - 1;
    LF_CHECK(count == batch.seq_len + 1, bad, path, ": line ", number, " has ", count, " tokens, the first window ",
             batch.seq_len + 1);
    ++batch.batch;
  }
  LF_CHECK(batch.batch > 0 && batch.seq_len > 0, bad, path, ": needs at least one window of two or more tokens");
  return batch;
}

void add_adapter_grads(const std::vector<LoraLayer>& d_lora, TensorMap& out) {
  for (std::size_t i = 0; i < d_lora.size(); ++i)
    for (auto t : every_lora_target)
      if (const auto& g = d_lora[i][static_cast<std::size_t>(t)]) {
        out[peft_tensor_name(static_cast<std::int64_t>(i), t, false)] = g->a;
        out[peft_tensor_name(static_cast<std::int64_t>(i), t, true)] = g->b;
      }
}

template <class T>
void run(const ModelGradFlags& f) {
  LF_CHECK(f.full || !f.adapter.empty(), ErrorKind::usage, "model-grad: --adapter is required without --full");
  LF_CHECK(!f.full || f.method == "exact", ErrorKind::usage, "model-grad: --full computes with --method exact");
  check_even_degree(f.degree);
  const AttentionRequest attention = attention_request(f.method, f.eps, f.degree);
  const std::filesystem::path model_file = std::filesystem::path(f.model) / "model.safetensors";
  const GptConfig config = read_gpt_config(std::filesystem::path(f.model) / "config.json");
  const TokenBatch batch = read_token_windows(f.tokens);
  try {
    validate_tokens(batch, config);
  } catch (const Error& e) {
    throw Error(bad, cat(f.tokens, ": ", e.what()));
  }
  TensorMap out;
  double loss = 0, seconds = 0;
  std::chrono::steady_clock::time_point start;
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  if (config.is_llama()) {
    auto weights = load_llama_model<T>(f.model, frozen_bf16<T>(f.dtype));
    apply_dtype(f.dtype, weights);
    std::optional<GptLora<T>> lora;
    if (!f.adapter.empty()) lora = load_peft_adapter<T>(f.adapter, weights.config);
    start = std::chrono::steady_clock::now();
    if (f.full) {
      const auto grads = llama_loss_and_full_grad(weights, lora ? &*lora : nullptr, batch, f.recompute);
      seconds = elapsed();
      loss = grads.loss;
      out = llama_hf_tensors(grads.d_weights);
      add_adapter_grads(grads.d_lora, out);
    } else {
      const auto grads = llama_loss_and_grad(weights, *lora, batch, attention, f.recompute);
      seconds = elapsed();
      loss = grads.loss;
      add_adapter_grads(grads.d_lora, out);
    }
  } else {
    const TensorMap model_tensors = read_safetensors(model_file).tensors;
    const std::string prefix = gpt_tensor_prefix(model_tensors);
    auto weights = gpt_weights_from_tensors<T>(config, model_tensors, model_file.string());
    apply_dtype(f.dtype, weights);
    std::optional<GptLora<T>> lora;
    if (!f.adapter.empty()) lora = load_peft_adapter<T>(f.adapter, weights.config);
    start = std::chrono::steady_clock::now();
    if (f.full) {
      const auto grads = gpt_loss_and_full_grad(weights, lora ? &*lora : nullptr, batch, f.recompute);
      seconds = elapsed();
      loss = grads.loss;
      for (const auto& [name, tensor] : gpt_named_tensors(grads.d_weights)) out[prefix + name] = *tensor;
      add_adapter_grads(grads.d_lora, out);
    } else {
      const auto grads = gpt_loss_and_grad(weights, *lora, batch, attention, f.recompute);
      seconds = elapsed();
      loss = grads.loss;
      add_adapter_grads(grads.d_lora, out);
    }
  }
  out["loss"] = Tensor(dtype_of<T>(), {});
  out["loss"].template data<T>()[0] = static_cast<T>(loss);
  write_safetensors(f.out, out);
  if (f.json) {
    const nlohmann::json j{{"loss", loss}, {"tokens", batch.predicted()}, {"seconds", seconds}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("loss %.10g over %lld tokens (%.3f s)\nwrote %s\n", loss,
                static_cast<long long>(batch.predicted()), seconds, f.out.c_str());
  }
}

}  // namespace

void add_model_grad_command(CLI::App& app) {
  auto flags = std::make_shared<ModelGradFlags>();
  auto* cmd = app.add_subcommand("model-grad", "GPT-2 or Llama family (+ PEFT adapter): loss and gradients on token windows");
  cmd->group("");  // hidden: a development and test tool
  cmd->add_option("--model", flags->model, "Model directory (config.json, model.safetensors)")->required();
  cmd->add_option("--adapter", flags->adapter, "PEFT adapter directory (required without --full)");
  cmd->add_option("--tokens", flags->tokens, "Text file: one window of T + 1 token ids per line")->required();
  cmd->add_option("--out", flags->out, "Output safetensors: loss and the gradient of every adapter (and with --full, base) tensor")->required();
  cmd->add_option("--dtype", flags->dtype, "Compute precision: f32 | f64 | bf16 (frozen weights in bf16; F32 outputs)")
      ->check(CLI::IsMember({"f32", "f64", "bf16"}));
  cmd->add_option("--method", flags->method, "Attention per layer and head: exact | fast | chained | auto (default exact)")
      ->check(CLI::IsMember({"exact", "fast", "chained", "auto"}));
  cmd->add_option("--eps", flags->eps, "Target relative error of each layer's attention gradients (default 1e-3)")
      ->check(positive);
  cmd->add_option("--degree", flags->degree, "Force the (even) Taylor degree of fast/chained (--eps then not enforced)")
      ->check(non_negative);
  cmd->add_flag("--full", flags->full, "Also write the gradient of every base weight, under its name in the model file");
  cmd->add_flag("--json", flags->json, "Print {\"loss\", \"tokens\", \"seconds\"} as JSON");
  add_recompute_option(*cmd, flags->recompute);
  add_threads_option(*cmd);
  cmd->callback([flags] { flags->dtype == "f64" ? run<double>(*flags) : run<float>(*flags); });
}

}  // namespace lorafast::cli
