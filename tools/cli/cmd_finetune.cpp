// `lorafast finetune`: LoRA fine-tuning of a GPT-2 or Llama-family model on a text
// file, a file of token ids (--data-format) or instruction data (JSONL, packed rows
// with the loss on the labelled tokens: sft_rows.hpp).
// Writes into --out: the PEFT adapter (adapter_config.json, adapter_model.safetensors),
// train_log.csv, attention_plan.csv (attention_log.hpp) and checkpoint.safetensors
// (adapter + AdamW state + step, for --resume), and with --plot loss_curve.png. Every input is checked before anything
// is written. Ctrl-C finishes the current step, saves a checkpoint and exits with
// 130 (SIGTERM: 143).
//
// Without --model it runs the embedded default (default_assets.hpp): the shipped
// base model, the shipped corpus unless --data is given, a short recipe for the
// flags not given (embedded_recipe), a sample from the base model before training
// and from the adapted model after (same prompt and seed), and the loss plot.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "attention_log.hpp"
#include "commands.hpp"
#include "default_assets.hpp"
#include "gpt_model_flags.hpp"
#include "model_flags.hpp"
#include "sft_flags.hpp"
#include "lorafast/cost_model.hpp"
#include "lorafast/generate.hpp"
#include "lorafast/train_checkpoint.hpp"
#include "train_output.hpp"

namespace lorafast::cli {
namespace {

namespace fs = std::filesystem;
constexpr auto bad = ErrorKind::bad_input;
constexpr auto usage = ErrorKind::usage;

struct FinetuneFlags {
  GptModelFlags model;
  std::string data, out = "lorafast-out";
  DataFormat data_format = DataFormat::bytes;
  SftFlags sft;  // instruction data (JSONL)
  TrainOptions train;  // seq_len and eval_every resolved once the model and data are known
  std::optional<std::int64_t> seq_len, eval_every;
  std::int64_t rank = 8;
  std::optional<double> alpha;
  bool rslora = false;
  std::vector<std::string> targets;  // default: attn.c_attn (GPT-2), q_proj v_proj (the Llama family)
  std::string qkv = "qkv", method = "auto";
  double eps = 1e-3;
  std::optional<int> degree;
  double val_fraction = 0.1;
  std::int64_t save_every = 100, stop_after = 0;
  bool resume = false;
  std::string init_adapter;  // start from this PEFT adapter
  std::optional<std::string> sample_prompt;
  std::int64_t sample_tokens = 200;
  bool plot = false;
  fs::path plot_script;  // set with --plot
  CLI::App* command = nullptr;

  bool given(const char* flag) const { return command->count(flag) > 0; }
};

LoraConfig lora_config(const FinetuneFlags& f, const GptConfig& model) {
  LoraConfig c;
  c.rank = f.rank;
  c.alpha = f.alpha.value_or(static_cast<double>(f.rank));
  c.rslora = f.rslora;
  c.targets.clear();
  std::vector<std::string> names = f.targets;
  if (names.empty()) names = model.is_llama() ? std::vector<std::string>{"q_proj", "v_proj"}
                                              : std::vector<std::string>{"attn.c_attn"};
  for (const auto& name : names) {
    if (name == "all" || name == "all-linear") {
      const auto all = model_lora_targets(model);
      c.targets.insert(c.targets.end(), all.begin(), all.end());
      continue;
    }
    const auto t = parse_lora_target(name);
    LF_CHECK(t.has_value(), usage, "--targets: '", name,
             "' is not one of attn.c_attn (c_attn), attn.c_proj, mlp.c_fc (c_fc), mlp.c_proj (GPT-2), q_proj, "
             "k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (the Llama family), all-linear (all)");
    LF_CHECK(is_llama_target(*t) == model.is_llama(), usage, "--targets: '", name, "' is not a module of a ",
             model_family_name(model.family), " model");
    c.targets.push_back(*t);
  }
  c.c_attn_qkv = parse_qkv_subset(f.qkv);
  c.base_model = f.model.model;
  c.validate();
  return c;
}

std::string exact(double v) { return nlohmann::json(v).dump(); }

// A global batch as --batch and the processes it is shared by.
std::string batch_terms(std::int64_t batch, const Processes& p) {
  return p.size == 1 ? std::to_string(batch) : cat(batch / p.size, " per process x ", p.size, " processes = ", batch);
}

std::string target_names(const LoraConfig& c) {
  std::string s;
  for (auto t : c.targets) s += (s.empty() ? "" : ",") + lora_target_name(t);
  return s;
}

template <class T>
// On --resume the checkpoint's options rule; a flag given now that disagrees with
// them is an error (changing it mid-run would not continue the same run).
void check_no_conflicts(const FinetuneFlags& f, const LoraConfig& l, const Checkpoint<T>& c,
                        const std::string& origin) {
  const TrainOptions& o = f.train;
  const TrainOptions& co = c.options;
  const LoraConfig& cl = c.state.lora.config;
  auto integer = [](std::int64_t v) { return std::to_string(v); };
  const struct {
    const char* flag;
    std::string now, then;
  } fixed[] = {
      {"--seq-len", integer(f.seq_len.value_or(co.seq_len)), integer(co.seq_len)},
      {"--batch", batch_terms(o.batch, o.processes), integer(co.batch)},
      {"--grad-accum", integer(o.grad_accum), integer(co.grad_accum)},
      {"--lr", exact(o.lr), exact(co.lr)},
      {"--warmup", integer(o.warmup), integer(co.warmup)},
      {"--min-lr-ratio", exact(o.min_lr_ratio), exact(co.min_lr_ratio)},
      {"--clip", exact(o.clip), exact(co.clip)},
      {"--weight-decay", exact(o.adamw.weight_decay), exact(co.adamw.weight_decay)},
      {"--lora-plus-ratio", exact(o.adamw.lora_plus_ratio), exact(co.adamw.lora_plus_ratio)},
      {"--seed", std::to_string(o.seed), std::to_string(co.seed)},
      {"--rank", integer(l.rank), integer(cl.rank)},
      {"--alpha", exact(l.alpha), exact(cl.alpha)},
      {"--rslora", l.rslora ? "true" : "false", cl.rslora ? "true" : "false"},
      {"--targets", target_names(l), target_names(cl)},
      {"--qkv", qkv_subset_name(l.c_attn_qkv), qkv_subset_name(cl.c_attn_qkv)},
      {"--val-fraction", exact(f.val_fraction), exact(c.val_fraction)},
  };
  for (const auto& x : fixed)
    LF_CHECK(!f.given(x.flag) || x.now == x.then, bad, origin, ": the checkpoint was trained with ", x.flag, ' ',
             x.then, ", not ", x.now, " (resume without ", x.flag, " or with the same value)");
}

template <class T>
void save_all(const fs::path& out, const Checkpoint<T>& checkpoint) {
  // The checkpoint is written even when the adapter cannot be (it holds the adapter
  // too, and --resume rewrites it): a late failure loses as little as it can.
  std::exception_ptr failure;
  try {
    save_peft_adapter(out, checkpoint.state.lora);
  } catch (const std::exception&) {
    failure = std::current_exception();
  }
  save_checkpoint(out / "checkpoint.safetensors", checkpoint);
  if (failure) std::rethrow_exception(failure);
}

// Streams `tokens` bytes sampled after the prompt (temperature 0.8, the run's seed)
// to stdout, every line indented under `title`.
template <class T>
void print_sample(const char* title, const GptWeights<T>& weights, const GptLora<T>* lora, const FinetuneFlags& f) {
  // JSON quoting shows the prompt's escapes; bytes that are not UTF-8 print as U+FFFD.
  const std::string prompt = nlohmann::json(*f.sample_prompt).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::printf("%s (prompt %s, seed %llu, temperature 0.8):\n", title, prompt.c_str(),
              static_cast<unsigned long long>(f.train.seed));
  bool line_start = true;
  auto put = [&](int c) {
    if (line_start) std::fputs("  | ", stdout);
    std::fputc(c, stdout);
    line_start = c == '\n';
    std::fflush(stdout);
  };
  for (char c : *f.sample_prompt) put(static_cast<unsigned char>(c));
  const Tokens context = byte_tokens(*f.sample_prompt);
  GenerateOptions options;
  options.sampling.temperature = 0.8;
  options.seed = f.train.seed;
  // The KV cache holds n_positions positions: a longer sample stops there.
  const auto room = weights.config.n_positions + 1 - static_cast<std::int64_t>(context.size());
  options.max_tokens = std::clamp<std::int64_t>(room, 0, f.sample_tokens);
  if (options.max_tokens > 0) generate(weights, lora, context, options, [&](std::int32_t token) { put(token); });
  if (!line_start) std::fputc('\n', stdout);
}

// Instruction data: prepared, split and packed with the run's --seq-len (its summary printed).
SftSplit read_instruction_data(const FinetuneFlags& f, std::int64_t seq_len, double val_fraction) {
  const Packing packing = f.sft.packing_mode(Packing::bfd);
  SftData data = prepare_instruction_data(f.data, f.model.model, f.sft.options(seq_len, packing));
  SftSplit split = split_and_pack(std::move(data.examples), val_fraction, seq_len, packing);
  std::printf("data: %s\ntraining: %s; validation: %s\n", data.summary.line(seq_len).c_str(),
              split.train.line(packing, seq_len).c_str(), split.val.line(packing, seq_len).c_str());
  return split;
}

// The rest of a run once its checkpoint options (`ckpt`, and `loaded` on --resume)
// and data are known: Data is TrainValSplit (text, token ids) or SftSplit (JSONL).
template <class W, class Data, class T = typename W::value_type>
void train_on(const FinetuneFlags& f, const W& weights, bool sampling, Checkpoint<T>& ckpt,
              std::optional<Checkpoint<T>>& loaded, const Data& split, const DataFingerprint& data_fingerprint) {
  const fs::path out = f.out, checkpoint_path = out / "checkpoint.safetensors";
  constexpr bool rows = std::is_same_v<Data, SftSplit>;
  ckpt.data = data_fingerprint;
  if (loaded) {
    LF_CHECK(loaded->data == data_fingerprint, bad, f.data, ": not the data the checkpoint ", checkpoint_path.string(),
             " was trained on (", loaded->data.tokens, " tokens with FNV-1a ", std::hex, loaded->data.hash, ", this ",
             rows ? "data with this --seq-len, --packing and template " : "file ", std::dec, data_fingerprint.tokens,
             " tokens with FNV-1a ", std::hex, data_fingerprint.hash, ")");
    ckpt.state = std::move(loaded->state);
    ckpt.options = loaded->options;
    ckpt.options.processes = f.train.processes;
    LF_CHECK(ckpt.options.batch % processes.size == 0, bad, checkpoint_path.string(), ": its global batch of ",
             ckpt.options.batch, " (--batch x processes) does not split over ", processes.size,
             " processes (resume with a number of processes that divides it)");
    // What may change between sessions: the horizon, validation cadence, attention
    // method (the checkpoint records the last session's), recomputation (the same
    // results either way; not saved).
    if (f.given("--steps")) ckpt.options.steps = f.train.steps;
    if (f.eval_every) ckpt.options.eval_every = *f.eval_every;
    if (f.given("--val-windows")) ckpt.options.val_windows = f.train.val_windows;
    ckpt.options.attention = f.train.attention;
    ckpt.options.recompute = f.train.recompute;
  }
  TrainOptions& options = ckpt.options;
  if (!f.resume && !f.eval_every) {
    // Default: validate about 10 times, if the validation split holds a window (a row).
    bool has_window = false;
    if constexpr (rows) has_window = split.val.rows() > 0;
    else has_window = eval_window_count(static_cast<std::int64_t>(split.val.size()), options.seq_len) > 0;
    options.eval_every = has_window ? std::max<std::int64_t>(1, options.steps / 10) : 0;
  }
  try {
    validate_training(weights, ckpt.state, split, options);
  } catch (const Error& e) {
    throw Error(e.kind(), e.kind() == bad ? cat(f.data, ": ", e.what()) : e.what());
  }
  // Only fast and chained can fail to certify --eps: find out before writing anything.
  const Method method = options.attention.method;
  if ((method == Method::fast || method == Method::chained) && ckpt.state.step() < options.steps)
    next_update_plan(weights, ckpt.state, split.train, options);

  if constexpr (std::is_same_v<W, GptWeights<T>>)
    if (sampling) print_sample<T>("sample from the base model", weights, nullptr, f);

  // What the run writes at its end must be writable now, not after the training.
  for (const char* name : {"adapter_config.json", "adapter_model.safetensors", "checkpoint.safetensors",
                           "train_log.csv", "attention_plan.csv"})
    LF_CHECK(!fs::exists(out / name) || fs::is_regular_file(out / name), bad, (out / name).string(),
             ": exists and is not a file, so the run could not write it");
  // Of several processes rank 0 alone writes and prints (the others' stdout is closed:
  // main.cpp), once every rank has read and checked its inputs: a rank that fails
  // before ends the job (main.cpp) with nothing written.
  wait_for_processes(options.processes);
  const bool writes = options.processes.root();
  const std::int64_t first = ckpt.state.step() + 1;
  std::optional<TrainLog> log;
  std::optional<AttentionLog> attention_log;
  std::optional<ProgressDisplay> progress;
  if (writes) {
    std::error_code ec;
    fs::create_directories(out, ec);
    LF_CHECK(!ec && fs::is_directory(out), bad, out.string(), ": cannot create the output directory",
             ec ? ": " + ec.message() : "");
    log.emplace(out / "train_log.csv", ckpt.state.step());
    attention_log.emplace(out / "attention_plan.csv", ckpt.state.step());
    progress.emplace(first, options.steps);
  }
  InterruptGuard interrupts;
  double first_loss = 0, last_loss = 0, tokens_done = 0, seconds = 0;
  std::optional<double> last_val;
  TrainCallbacks callbacks;
  if (writes) callbacks.on_step = [&](const StepReport& r) {
    if (r.step == first) first_loss = r.loss;
    last_loss = r.loss;
    tokens_done += static_cast<double>(r.tokens);
    seconds += r.seconds;
    if (r.val_loss) last_val = r.val_loss;
    log->append(r);
    for (const auto& line : attention_log->record(r.step, r.plan)) progress->note(line);
    progress->update(r);
    if (f.save_every > 0 && r.step % f.save_every == 0 && r.step < options.steps) save_all(out, ckpt);
  };
  callbacks.stop_requested = [&] {
    return InterruptGuard::signal_received() != 0 || (f.stop_after > 0 && ckpt.state.step() >= f.stop_after);
  };
  const bool already_there = f.stop_after > 0 && ckpt.state.step() >= f.stop_after && ckpt.state.step() < options.steps;
  TrainOutcome outcome = TrainOutcome::stopped;
  try {
    if (!already_there) outcome = train(weights, ckpt.state, split, options, callbacks);
  } catch (const Error& e) {
    // A head that stops certifying (or a diverging loss) leaves the state at the last update.
    if (e.kind() != ErrorKind::cannot_meet || !writes) throw;
    progress->finish();
    save_all(out, ckpt);
    throw Error(e.kind(), cat(e.what(), "; checkpoint of step ", ckpt.state.step(), " saved in ", out.string(),
                              " (continue with --resume)"));
  }
  if (!writes) return;
  progress->finish();
  save_all(out, ckpt);

  const std::int64_t done = ckpt.state.step();
  const bool plotted = f.plot && done > 0 && plot_loss_curve(f.plot_script, out / "train_log.csv", out / "loss_curve.png");
  if (done < first) {
    std::printf("nothing to train: the run is at step %lld of %lld\nwrote %s\n", static_cast<long long>(done),
                static_cast<long long>(options.steps), out.c_str());
  } else {
    std::printf("steps %lld-%lld of %lld: loss %.4f -> %.4f", static_cast<long long>(first),
                static_cast<long long>(done), static_cast<long long>(options.steps), first_loss, last_loss);
    if (last_val) std::printf(", val loss %.4f (perplexity %.3f)", *last_val, std::exp(*last_val));
    std::printf(", %.0f tokens/s in %.0f s\n", seconds > 0 ? tokens_done / seconds : 0.0, seconds);
    if constexpr (std::is_same_v<W, GptWeights<T>>)
      if (sampling) print_sample<T>("sample from the adapted model", weights, &ckpt.state.lora, f);
    std::printf("wrote %s (adapter_config.json, adapter_model.safetensors, train_log.csv, attention_plan.csv, "
                "checkpoint.safetensors%s)\n",
                out.c_str(), plotted ? ", loss_curve.png" : "");
  }
  if (f.plot && done > 0 && !plotted)
    std::printf("loss curve skipped: %s needs python3 with matplotlib (Debian: python3-matplotlib)\n",
                f.plot_script.c_str());
  if (outcome == TrainOutcome::stopped) {
    const int signo = InterruptGuard::signal_received();
    std::fprintf(stderr, "lorafast: %s after step %lld of %lld; checkpoint saved in %s (continue with --resume)\n",
                 signo != 0 ? "interrupted" : "stopped as asked (--stop-after)", static_cast<long long>(done),
                 static_cast<long long>(options.steps), out.c_str());
    if (signo != 0) command_exit_status = 128 + signo;
  }
}

template <class W, class T = typename W::value_type>
void run_model(const FinetuneFlags& f, const W& weights, const LoraConfig& flag_lora, bool sampling) {
  const GptConfig& config = weights.config;
  Checkpoint<T> ckpt;
  ckpt.model = config;
  ckpt.options = f.train;
  ckpt.val_fraction = f.val_fraction;
  std::optional<Checkpoint<T>> loaded;
  if (f.resume) {
    const fs::path path = fs::path(f.out) / "checkpoint.safetensors";
    loaded = load_checkpoint<T>(path, config);
    check_no_conflicts(f, flag_lora, *loaded, path.string());
    ckpt.options.seq_len = loaded->options.seq_len;
    ckpt.val_fraction = loaded->val_fraction;
  } else {
    ckpt.options.seq_len = f.seq_len.value_or(default_seq_len(config, f.data_format));
    ckpt.state = init_train_state<T>(config, flag_lora, f.train.seed);
    if (!f.init_adapter.empty()) {  // its weights and configuration instead of fresh ones
      ckpt.state.lora = load_peft_adapter<T>(f.init_adapter, config);
      ckpt.state.adamw = init_adamw_state(ckpt.state.lora);
    }
  }
  if (f.data_format == DataFormat::jsonl) {
    const SftSplit split = read_instruction_data(f, ckpt.options.seq_len, ckpt.val_fraction);
    train_on(f, weights, sampling, ckpt, loaded, split, fingerprint(split));
  } else {
    // Text is tokenized once: its ids are cached beside the run's output.
    // Rank 0 alone writes the cache; the others tokenize the text themselves.
    const auto cache = f.train.processes.root() ? std::optional(fs::path(f.out) / "data_tokens.bin") : std::nullopt;
    const Tokens tokens = read_data(f.model, f.data, f.data_format, config.vocab_size, cache);
    train_on(f, weights, sampling, ckpt, loaded, split_train_val(tokens, ckpt.val_fraction), fingerprint(tokens));
  }
}

template <class T>
void run(const FinetuneFlags& f) {
  f.train.validate();  // usage errors (and an odd --degree) before reading any file
  LF_CHECK(f.val_fraction < 1, usage, "--val-fraction must be in [0, 1), got ", f.val_fraction);
  const GptConfig config = model_config_for_data(f.model, f.data_format);
  const LoraConfig flag_lora = lora_config(f, config);
  const bool sampling = f.sample_prompt && !f.sample_prompt->empty() && f.sample_tokens > 0;
  LF_CHECK(!sampling || f.data_format == DataFormat::bytes, usage,
           "--sample-prompt is text, one token per byte: it needs --data-format bytes");
  LF_CHECK(!sampling || !config.is_llama(), usage, "--sample-prompt: sampling from a ",
           model_family_name(config.family), " model is not implemented yet");
  with_model_for_data<T>(f.model, f.data_format,
                         [&](const auto& weights) { run_model(f, weights, flag_lora, sampling && processes.root()); });
}

// The embedded default run's recipe, for each flag not given: a few minutes on two
// cores, a learning rate suited to the small base model, validation every 25 steps.
void embedded_recipe(FinetuneFlags& f) {
  TrainOptions& t = f.train;
  if (!f.given("--steps")) t.steps = 150;
  if (!f.given("--lr")) t.lr = 2e-3;
  if (!f.given("--warmup")) t.warmup = 10;
  if (!f.eval_every) f.eval_every = 25;
  if (!f.given("--val-windows")) t.val_windows = 0;
  if (!f.given("--targets")) f.targets = {"attn.c_attn", "mlp.c_fc"};
  if (!f.sample_prompt) f.sample_prompt = default_sample_prompt;
  f.plot = true;
}

void dispatch(FinetuneFlags f) {
  if (f.model.model.empty() || f.data.empty() || f.plot) {
    const DefaultAssets assets = find_default_assets();
    f.plot_script = assets.plot_script();
    if (f.data.empty()) f.data = assets.corpus().string();
    if (f.model.model.empty()) {
      f.model.model = assets.model().string();
      embedded_recipe(f);
      std::printf("lorafast finetune: the embedded default (base model %s, corpus %s)\n", f.model.model.c_str(),
                  f.data.c_str());
    }
  }
  if (f.eval_every) f.train.eval_every = *f.eval_every;
  std::string dtype = f.model.dtype;
  if (f.resume) {
    const fs::path path = fs::path(f.out) / "checkpoint.safetensors";
    LF_CHECK(fs::exists(path), bad, path.string(), ": no checkpoint to resume (run finetune without --resume first)");
    const DType kind = checkpoint_dtype(path);
    const std::string stored = kind == DType::f64 ? "f64" : kind == DType::bf16 ? "bf16" : "f32";
    LF_CHECK(!f.given("--dtype") || dtype == stored, bad, path.string(), ": the checkpoint was trained with --dtype ",
             stored, ", not ", dtype);
    dtype = stored;
  }
  f.model.dtype = dtype;
  f.train.bf16 = dtype == "bf16";
  // --batch is per process; the options (and checkpoints) hold the global batch.
  f.train.processes = processes;
  f.train.batch *= processes.size;
  dtype == "f64" ? run<double>(f) : run<float>(f);
}

}  // namespace

void add_finetune_command(CLI::App& app) {
  auto f = std::make_shared<FinetuneFlags>();
  auto* cmd = app.add_subcommand("finetune", "LoRA fine-tuning of a GPT-2 or Llama-family model on text (its tokenizer.json, or "
                                             "bytes for a byte-level model) or a token-id file");
  f->command = cmd;
  f->model.add_to(*cmd, /*with_adapter=*/false, /*model_required=*/false);
  TrainOptions& t = f->train;
  cmd->add_option("--data", f->data, "Training text (byte tokens), token ids (--data-format), or instruction "
                                     "examples (a .jsonl file or a directory of them); the last --val-fraction validates (default: the embedded corpus data/lora_and_adam.txt)");
  add_data_format_option(*cmd, f->data_format);
  f->sft.add_to(*cmd, /*packing=*/true);
  cmd->add_option("--out", f->out, "Output directory: adapter, train_log.csv, checkpoint (default lorafast-out)");
  cmd->footer("Without --model: the embedded default, a base model pretrained on Tiny Shakespeare, fine-tuned on "
                "a short dialogue it has never seen, with --steps 150 --lr 2e-3 --warmup 10 --eval-every 25 "
                "--val-windows 0 --targets attn.c_attn mlp.c_fc --plot unless given.");
  cmd->add_option("--steps", t.steps, "Optimizer updates (default 200)")->check(non_negative);
  cmd->add_option("--seq-len", f->seq_len, "Tokens per window T (default 128, at most n_positions or --positions); "
                                           "instruction data: the row length, examples truncated to it (default 1024)")
      ->check(positive);
  cmd->add_option("--batch", t.batch, "Windows (instruction data: rows) per micro-batch B, of each process under "
                                      "mpirun (default 8)")->check(positive);
  cmd->add_option("--grad-accum", t.grad_accum, "Micro-batches per update K (default 1)")->check(positive);
  cmd->add_option("--rank", f->rank, "LoRA rank R (default 8)")->check(positive);
  cmd->add_option("--alpha", f->alpha, "LoRA alpha (default R: scaling 1)");
  cmd->add_flag("--rslora", f->rslora, "rsLoRA scaling alpha / sqrt(R)");
  cmd->add_option("--targets", f->targets, "Adapted modules: attn.c_attn attn.c_proj mlp.c_fc mlp.c_proj (GPT-2), "
                                           "q_proj k_proj v_proj o_proj gate_proj up_proj down_proj (the Llama "
                                           "family), or all-linear (all) (default attn.c_attn; q_proj v_proj)")
      ->expected(1, -1);
  cmd->add_option("--qkv", f->qkv, "Which of q, k, v attn.c_attn adapts, e.g. qv (default qkv)");
  cmd->add_option("--lr", t.lr, "Peak learning rate (default 2e-4)")->check(positive);
  cmd->add_option("--lora-plus-ratio", t.adamw.lora_plus_ratio, "LoRA+: learning rate of B / of A (default 1)")
      ->check(positive);
  cmd->add_option("--warmup", t.warmup, "Linear warmup updates (default 0)")->check(non_negative);
  cmd->add_option("--min-lr-ratio", t.min_lr_ratio, "Cosine decay floor, as a fraction of --lr (default 0.1)")
      ->check(non_negative);
  cmd->add_option("--weight-decay", t.adamw.weight_decay, "AdamW decoupled weight decay (default 0)")
      ->check(non_negative);
  cmd->add_option("--clip", t.clip, "Global gradient-norm clip; 0 = off (default 1)")->check(non_negative);
  cmd->add_option("--eval-every", f->eval_every, "Validate every N updates and after the last; 0 = never "
                                                 "(default: steps / 10)")->check(non_negative);
  cmd->add_option("--val-fraction", f->val_fraction, "Tail of the data used for validation (default 0.1)")
      ->check(non_negative);
  cmd->add_option("--val-windows", t.val_windows, "Validation windows evaluated; 0 = all (default 64)")
      ->check(non_negative);
  cmd->add_option("--save-every", f->save_every, "Checkpoint every N updates; 0 = at the end only (default 100)")
      ->check(non_negative);
  cmd->add_option("--stop-after", f->stop_after, "Save a checkpoint and stop after update K (continue with "
                                                 "--resume)")->check(non_negative);
  cmd->add_option("--seed", t.seed, "Seed of the adapter initialisation and the training windows (default 0)");
  auto* resume = cmd->add_flag("--resume", f->resume, "Continue the run whose checkpoint is in --out, with its options");
  auto* init = cmd->add_option("--init-adapter", f->init_adapter,
                               "Start from this PEFT adapter directory (its rank, alpha, targets and weights; fresh "
                               "AdamW state) instead of a new adapter")
                   ->excludes(resume);
  for (const char* flag : {"--rank", "--alpha", "--rslora", "--targets", "--qkv"}) init->excludes(cmd->get_option(flag));
  cmd->add_option("--method", f->method, "Attention per layer and head: exact | fast | chained | auto (default "
                                         "auto: per head the cheapest method certified within --eps); each layer's "
                                         "choice is printed and written to attention_plan.csv")
      ->check(CLI::IsMember({"auto", "exact", "fast", "chained"}));
  cmd->add_option("--eps", f->eps, "Target relative error of each layer's attention gradients (default 1e-3)")
      ->check(positive);
  cmd->add_option("--degree", f->degree, "Force the (even) Taylor degree of fast/chained (--eps then not enforced)")
      ->check(non_negative);
  cmd->add_option("--sample-prompt", f->sample_prompt, "Print a sample after this prompt from the base model "
                                                       "before training and the adapted one after (default: none; "
                                                       "\"LORA:\\n\" for the embedded default)");
  cmd->add_option("--sample-tokens", f->sample_tokens, "Bytes per sample (default 200; at most n_positions after the prompt)")->check(non_negative);
  cmd->add_flag("--plot", f->plot, "Draw train_log.csv into loss_curve.png (python3 + matplotlib; on for the "
                                   "embedded default)");
  add_recompute_option(*cmd, f->train.recompute);
  add_threads_option(*cmd);
  cmd->callback([f, cmd] {
    f->train.attention = attention_request(f->method, f->eps, f->degree);
    resolve_data_format(*cmd, f->model, f->data, f->data_format);
    dispatch(*f);
  });
}

}  // namespace lorafast::cli
