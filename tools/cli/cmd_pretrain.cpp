// `lorafast pretrain`: trains a byte-level model (vocabulary 256; GPT-2, or with
// --model-type a Llama-family one) from its seeded initialisation, or the model of
// --init trained further, on a text file, every weight with AdamW. Writes into
// --out the model directory (config.json, model.safetensors: what --model of
// finetune, eval and generate reads) and train_log.csv. Every input is checked
// before anything is written. Ctrl-C finishes the current step, saves the model
// as it is and exits with 130 (SIGTERM: 143).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "commands.hpp"
#include "gpt_model_flags.hpp"
#include "lorafast/pretrain.hpp"
#include "train_output.hpp"

namespace lorafast::cli {
namespace {

namespace fs = std::filesystem;

struct PretrainFlags {
  std::string data, out, dtype = "f32", model_type = "gpt2", init;
  std::int64_t layers = 4, heads = 4, width = 128;
  std::optional<std::int64_t> positions, eval_every, kv_heads, intermediate;
  std::optional<double> rope_theta;
  bool tie_embeddings = false;
  TrainOptions train;
  double val_fraction = 0.1;
  std::int64_t save_every = 0;
};

ModelFamily family_of(const std::string& model_type) {
  for (auto family : {ModelFamily::gpt2, ModelFamily::llama, ModelFamily::qwen2, ModelFamily::mistral, ModelFamily::qwen3})
    if (model_family_name(family) == model_type) return family;
  LF_ASSERT(false);  // CLI::IsMember
}

GptConfig model_config(const PretrainFlags& f) {
  GptConfig c;
  c.family = family_of(f.model_type);
  c.n_layer = f.layers;
  c.n_head = f.heads;
  c.n_embd = f.width;
  c.n_positions = f.positions.value_or(f.train.seq_len);
  c.vocab_size = byte_vocab_size;
  LF_CHECK(c.n_embd % c.n_head == 0, ErrorKind::usage, "--heads ", c.n_head, " does not divide --width ", c.n_embd);
  LF_CHECK(c.is_llama() || (!f.kv_heads && !f.intermediate && !f.rope_theta && !f.tie_embeddings), ErrorKind::usage,
           "--kv-heads, --intermediate, --rope-theta and --tie-embeddings need a Llama-family --model-type");
  if (c.is_llama()) {
    c.layer_norm_epsilon = 1e-6;  // LlamaConfig's rms_norm_eps
    c.llama.n_kv_head = f.kv_heads.value_or(f.heads);
    LF_CHECK(c.n_head % c.llama.n_kv_head == 0, ErrorKind::usage, "--kv-heads ", c.llama.n_kv_head,
             " does not divide --heads ", c.n_head);
    c.llama.head_dim = c.n_embd / c.n_head;
    c.llama.intermediate_size = f.intermediate.value_or(4 * f.width);
    c.llama.tie_word_embeddings = f.tie_embeddings;
    c.llama.qkv_bias = c.family == ModelFamily::qwen2;
    c.llama.qk_norm = c.family == ModelFamily::qwen3;
    c.llama.rope.theta = f.rope_theta.value_or(c.llama.rope.theta);
  }
  try {
    c.validate("the model");
  } catch (const Error& e) {
    throw Error(ErrorKind::usage, cat(e.what(), " (from --layers, --heads, --width, --positions, --kv-heads, "
                                      "--intermediate)"));
  }
  return c;
}

void save_model(const fs::path& dir, const GptWeights<float>& w) { save_gpt_model(dir, w); }
void save_model(const fs::path& dir, const GptWeights<double>& w) { save_gpt_model(dir, w); }
void save_model(const fs::path& dir, const LlamaWeights<float>& w) { save_llama_model(dir, w); }
void save_model(const fs::path& dir, const LlamaWeights<double>& w) { save_llama_model(dir, w); }

template <class Weights>
void train(const PretrainFlags& f, PretrainStateOf<Weights> state, const TrainValSplit& split,
           const TrainOptions& options);

// The model to train: the seeded initialisation of the flags' configuration, or --init's model.
template <class T>
void run(const PretrainFlags& f) {
  f.train.validate();
  LF_CHECK(f.val_fraction < 1, ErrorKind::usage, "--val-fraction must be in [0, 1), got ", f.val_fraction);
  const GptConfig config = f.init.empty() ? model_config(f) : read_gpt_config(fs::path(f.init) / "config.json");
  LF_CHECK(config.family != ModelFamily::gemma3 && config.family != ModelFamily::smollm3, ErrorKind::usage, f.init,
           ": pretraining a ", model_family_name(config.family),
           " model is not supported (its config.json is not written)");
  const Tokens tokens = read_byte_tokens(f.data);
  const TrainValSplit split = split_train_val(tokens, f.val_fraction);
  TrainOptions options = f.train;
  options.bf16 = f.dtype == "bf16";
  note_bf16_fallback(f.dtype);
  if (f.eval_every) {
    options.eval_every = *f.eval_every;
  } else {  // validate about 10 times, if the validation split holds a window
    const bool has_window = eval_window_count(static_cast<std::int64_t>(split.val.size()), options.seq_len) > 0;
    options.eval_every = has_window ? std::max<std::int64_t>(1, options.steps / 10) : 0;
  }
  try {
    validate_training_run(config, split, options);
  } catch (const Error& e) {
    throw Error(e.kind(), e.kind() == ErrorKind::bad_input ? cat(f.data, ": ", e.what()) : e.what());
  }
  if (!config.is_llama()) {
    if (f.init.empty()) return train(f, init_pretrain_state<T>(config, options.seed), split, options);
    return train(f, pretrain_state_from(load_gpt_model<T>(f.init)), split, options);
  }
  train(f, pretrain_state_from(f.init.empty() ? init_llama_weights<T>(config, options.seed) : load_llama_model<T>(f.init)),
        split, options);
}

template <class Weights>
void train(const PretrainFlags& f, PretrainStateOf<Weights> state, const TrainValSplit& split,
           const TrainOptions& options) {
  const fs::path out = f.out;
  std::error_code ec;
  fs::create_directories(out, ec);
  LF_CHECK(!ec && fs::is_directory(out), ErrorKind::bad_input, out.string(), ": cannot create the output directory",
           ec ? ": " + ec.message() : "");
  TrainLog log(out / "train_log.csv", 0);
  ProgressDisplay progress(1, options.steps);
  InterruptGuard interrupts;
  double first_loss = 0, last_loss = 0, tokens_done = 0, seconds = 0;
  std::optional<double> last_val;
  TrainCallbacks callbacks;
  callbacks.on_step = [&](const StepReport& r) {
    if (r.step == 1) first_loss = r.loss;
    last_loss = r.loss;
    tokens_done += static_cast<double>(r.tokens);
    seconds += r.seconds;
    if (r.val_loss) last_val = r.val_loss;
    log.append(r);
    progress.update(r);
    if (f.save_every > 0 && r.step % f.save_every == 0 && r.step < options.steps) save_model(out, state.weights);
  };
  callbacks.stop_requested = [] { return InterruptGuard::signal_received() != 0; };
  const TrainOutcome outcome = pretrain(state, split, options, callbacks);
  progress.finish();
  save_model(out, state.weights);

  if (state.step > 0) {
    std::printf("steps 1-%lld of %lld: loss %.4f -> %.4f", static_cast<long long>(state.step),
                static_cast<long long>(options.steps), first_loss, last_loss);
    if (last_val) std::printf(", val loss %.4f (perplexity %.3f)", *last_val, std::exp(*last_val));
    std::printf(", %.0f tokens/s in %.0f s\n", seconds > 0 ? tokens_done / seconds : 0.0, seconds);
  }
  std::printf("wrote %s (config.json, model.safetensors, train_log.csv)\n", out.c_str());
  if (outcome == TrainOutcome::stopped) {
    const int signo = InterruptGuard::signal_received();
    std::fprintf(stderr, "lorafast: interrupted after step %lld of %lld; the model so far is saved in %s\n",
                 static_cast<long long>(state.step), static_cast<long long>(options.steps), out.c_str());
    command_exit_status = 128 + signo;
  }
}

}  // namespace

void add_pretrain_command(CLI::App& app) {
  auto f = std::make_shared<PretrainFlags>();
  auto* cmd = app.add_subcommand("pretrain", "Train a byte-level GPT-2 or Llama-family model on a text file");
  TrainOptions& t = f->train;
  t.steps = 1000;
  t.batch = 16;
  t.lr = 1e-3;
  t.warmup = 50;
  t.adamw.weight_decay = 0.1;
  t.adamw.beta2 = 0.99;
  cmd->add_option("--data", f->data, "Training text (byte tokens); the last --val-fraction validates")->required();
  cmd->add_option("--out", f->out, "Output model directory (config.json, model.safetensors, train_log.csv)")
      ->required();
  cmd->add_option("--model-type", f->model_type,
                  "Architecture of a new model: gpt2 | llama | qwen2 | mistral | qwen3 (default gpt2)")
      ->check(CLI::IsMember({"gpt2", "llama", "qwen2", "mistral", "qwen3"}));
  auto* init = cmd->add_option("--init", f->init,
                               "Start from this model directory (its config.json and weights) instead of a new "
                               "model; the size flags do not apply");
  cmd->add_option("--layers", f->layers, "Transformer blocks (default 4)")->check(positive);
  cmd->add_option("--heads", f->heads, "Attention heads (default 4)")->check(positive);
  cmd->add_option("--width", f->width, "Model width n_embd, a multiple of --heads (default 128)")->check(positive);
  cmd->add_option("--positions", f->positions, "Context length n_positions (default --seq-len)")->check(positive);
  cmd->add_option("--kv-heads", f->kv_heads, "Llama family: key/value heads, dividing --heads (default --heads)")
      ->check(positive);
  cmd->add_option("--intermediate", f->intermediate, "Llama family: SwiGLU width (default 4 * --width)")
      ->check(positive);
  cmd->add_option("--rope-theta", f->rope_theta, "Llama family: rotary base (default 10000)")->check(positive);
  cmd->add_flag("--tie-embeddings", f->tie_embeddings, "Llama family: the LM head is embed_tokens (default untied)");
  for (const char* name : {"--model-type", "--layers", "--heads", "--width", "--positions", "--kv-heads",
                           "--intermediate", "--rope-theta", "--tie-embeddings"})
    init->excludes(cmd->get_option(name));
  cmd->add_option("--seq-len", t.seq_len, "Tokens per training window T (default 128)")->check(positive);
  cmd->add_option("--batch", t.batch, "Windows per micro-batch B (default 16)")->check(positive);
  cmd->add_option("--grad-accum", t.grad_accum, "Micro-batches per update K (default 1)")->check(positive);
  cmd->add_option("--steps", t.steps, "Optimizer updates (default 1000)")->check(non_negative);
  cmd->add_option("--lr", t.lr, "Peak learning rate (default 1e-3)")->check(positive);
  cmd->add_option("--warmup", t.warmup, "Linear warmup updates (default 50)")->check(non_negative);
  cmd->add_option("--min-lr-ratio", t.min_lr_ratio, "Cosine decay floor, as a fraction of --lr (default 0.1)")
      ->check(non_negative);
  cmd->add_option("--weight-decay", t.adamw.weight_decay,
                  "AdamW decoupled weight decay of the rank-2 tensors (embeddings, Conv1D weights; default 0.1)")
      ->check(non_negative);
  cmd->add_option("--beta2", t.adamw.beta2, "AdamW beta2 (default 0.99)")->check(non_negative);
  cmd->add_option("--clip", t.clip, "Global gradient-norm clip; 0 = off (default 1)")->check(non_negative);
  cmd->add_option("--seed", t.seed, "Seed of the initialisation and the training windows (default 0)");
  cmd->add_option("--eval-every", f->eval_every, "Validate every N updates and after the last; 0 = never "
                                                 "(default: steps / 10)")->check(non_negative);
  cmd->add_option("--val-fraction", f->val_fraction, "Tail of the data used for validation (default 0.1)")
      ->check(non_negative);
  cmd->add_option("--val-windows", t.val_windows, "Validation windows evaluated; 0 = all (default 64)")
      ->check(non_negative);
  cmd->add_option("--save-every", f->save_every, "Also save the model every N updates; 0 = at the end (default)")
      ->check(non_negative);
  cmd->add_option("--dtype", f->dtype,
                  "Compute precision: f32 | f64 (the saved weights have it too) | bf16 (mixed: each update's "
                  "products on a bf16 copy of the weights, f32 master weights, AdamW state and saved model)")
      ->check(CLI::IsMember({"f32", "f64", "bf16"}));
  add_recompute_option(*cmd, t.recompute);
  add_threads_option(*cmd);
  cmd->callback([f] {
    if (f->eval_every) f->train.eval_every = *f->eval_every;
    f->dtype == "f64" ? run<double>(*f) : run<float>(*f);
  });
}

}  // namespace lorafast::cli
