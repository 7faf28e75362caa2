// The fine-tuning loop: sample, accumulate, clip, step, validate, report.
#include <algorithm>
#include <cmath>
#include <span>
#include <type_traits>
#include <utility>

#include "lorafast/train_loop.hpp"
#include "train/update_loop.hpp"

namespace lorafast {
namespace {
constexpr auto usage = ErrorKind::usage;
}

void TrainOptions::validate() const {
  LF_CHECK(steps >= 0, usage, "`steps` must be >= 0, got ", steps);
  LF_CHECK(seq_len >= 1, usage, "`seq_len` must be >= 1, got ", seq_len);
  LF_CHECK(batch >= 1 && batch <= 1 << 20, usage, "`batch` must be in [1, 1048576], got ", batch);
  LF_CHECK(processes.size >= 1 && processes.rank >= 0 && processes.rank < processes.size, usage,
           "process ", processes.rank, " of ", processes.size, " is not a rank of the job");
  LF_CHECK(batch % processes.size == 0, usage, "`batch` ", batch, " (windows per micro-batch of all ",
           processes.size, " processes) is not a multiple of the processes");
  LF_CHECK(grad_accum >= 1 && grad_accum <= 1 << 20, usage, "`grad_accum` must be in [1, 1048576], got ", grad_accum);
  LF_CHECK(std::isfinite(clip), usage, "`clip` must be finite, got ", clip);
  LF_CHECK(eval_every >= 0, usage, "`eval_every` must be >= 0, got ", eval_every);
  LF_CHECK(val_windows >= 0, usage, "`val_windows` must be >= 0, got ", val_windows);
  schedule().validate();
  adamw.validate();
  LF_CHECK(attention.eps > 0 && std::isfinite(attention.eps), usage, "`eps` must be positive and finite, got ",
           attention.eps);
  LF_CHECK(!attention.degree || (*attention.degree >= 0 && *attention.degree % 2 == 0), ErrorKind::bad_input,
           "`degree` ", attention.degree.value_or(0),
           " is odd or negative: odd Taylor degrees can make the softmax normaliser negative; use an even degree");
}

template <class T>
TrainState<T> init_train_state(const GptConfig& model, const LoraConfig& lora, std::uint64_t seed) {
  TrainState<T> state;
  state.lora = init_gpt_lora<T>(model, lora, seed);
  state.adamw = init_adamw_state(state.lora);
  return state;
}

template <class T>
double validation_loss(const GptWeights<T>& weights, const GptLora<T>& lora, const Tokens& val,
                       const TrainOptions& options) {
  return evaluate_windows(weights, &lora, val, options.seq_len, options.val_windows, options.batch).loss;
}

template <class T>
double validation_loss(const LlamaWeights<T>& weights, const GptLora<T>& lora, const Tokens& val,
                       const TrainOptions& options) {
  return evaluate_windows(weights, &lora, val, options.seq_len, options.val_windows, options.batch).loss;
}

void validate_training_run(const GptConfig& model, const TrainValSplit& data, const TrainOptions& options) {
  options.validate();
  LF_CHECK(options.seq_len <= model.n_positions, usage, "`seq_len` ", options.seq_len,
           " exceeds the model's n_positions ", model.n_positions, " (`positions` ", options.seq_len,
           " extends its position table)");
  const auto train_tokens = static_cast<std::int64_t>(data.train.size());
  LF_CHECK(train_tokens >= options.seq_len + 1, ErrorKind::bad_input, "the training split has ", train_tokens,
           " tokens, fewer than one window of `seq_len` + 1 = ", options.seq_len + 1);
  if (options.eval_every > 0)
    LF_CHECK(eval_window_count(static_cast<std::int64_t>(data.val.size()), options.seq_len) > 0,
             ErrorKind::bad_input, "the validation split has ", data.val.size(),
             " tokens, fewer than one window of `seq_len` + 1 = ", options.seq_len + 1,
             " (raise `val_fraction`, lower `seq_len`, or pass `eval_every` 0)");
}

namespace {

template <class W, class T>
void validate_any(const W& weights, const TrainState<T>& state, const TrainValSplit& data,
                  const TrainOptions& options) {
  options.validate();
  validate_gpt_lora(state.lora, weights.config, "adapter");
  validate_training_run(weights.config, data, options);
}

void validate_rows(const GptConfig& model, const SftSplit& data, const TrainOptions& options) {
  options.validate();
  LF_CHECK(options.seq_len <= model.n_positions, usage, "`seq_len` ", options.seq_len,
           " exceeds the model's n_positions ", model.n_positions);
  LF_CHECK(data.train.rows() > 0, ErrorKind::bad_input, "no training example");
  LF_CHECK(options.eval_every == 0 || data.val.rows() > 0, ErrorKind::bad_input,
           "no validation example (raise `val_fraction`, or pass `eval_every` 0)");
}

template <class W, class T>
void validate_any(const W& weights, const TrainState<T>& state, const SftSplit& data, const TrainOptions& options) {
  validate_gpt_lora(state.lora, weights.config, "adapter");
  validate_rows(weights.config, data, options);
}

// The update's gradient of every process: the tensors packed in their canonical
// order, summed in rank order (one exchange), unpacked.
template <class T>
void sum_over_processes(std::vector<LoraLayer>& grads, const Processes& processes) {
  if (processes.size == 1) return;
  const std::vector<Tensor*> tensors = lora_tensor_list(grads);
  std::vector<T> packed;
  for (const Tensor* t : tensors) packed.insert(packed.end(), t->data<T>(), t->data<T>() + t->numel());
  sum_in_rank_order(std::span<T>(packed), processes);
  auto next = packed.cbegin();
  for (Tensor* t : tensors) {
    std::copy_n(next, t->numel(), t->data<T>());
    next += t->numel();
  }
}

// Fine-tuning as update_loop.hpp's Run: gradients of the adapters only; `Val` the
// validation data (Tokens or SftRows).
template <class W, class Val, class T = typename W::value_type>
class LoraRun {
 public:
  LoraRun(const W& weights, TrainState<T>& state, const Val& val, const TrainOptions& options)
      : weights_(weights), state_(state), val_(val), options_(options) {}

  std::int64_t step() const { return state_.step(); }

  double add_micro_batch(const TokenBatch& batch) {
    auto result = model_loss_and_grad(weights_, state_.lora, batch, options_.attention, options_.recompute);
    accumulate_grads(grads_, result.d_lora);
    if (plan_.empty()) plan_ = std::move(result.plan);
    return result.loss;
  }

  GptAttentionPlan take_plan() { return std::exchange(plan_, {}); }

  double finish_update(std::int64_t divisor, double clip, double lr) {
    sum_over_processes<T>(grads_, options_.processes);
    if (divisor > 1) scale_grads(grads_, 1.0 / static_cast<double>(divisor));
    const double norm = clip_grad_norm(grads_, clip);
    adamw_step(state_.lora, grads_, state_.adamw, options_.adamw, lr);
    grads_.clear();
    return norm;
  }

  double validation_loss() const {
    if constexpr (std::is_same_v<Val, SftRows>)
      return evaluate_rows(weights_, &state_.lora, val_, options_.val_windows, options_.batch).loss;
    else
      return lorafast::validation_loss(weights_, state_.lora, val_, options_);
  }

 private:
  const W& weights_;
  TrainState<T>& state_;
  const Val& val_;
  const TrainOptions& options_;
  std::vector<LoraLayer> grads_;
  GptAttentionPlan plan_;  // of the update's first micro-batch
};

template <class W, class T>
GptAttentionPlan next_plan_any(const W& weights, const TrainState<T>& state, const Tokens& train,
                               const TrainOptions& options) {
  const auto batch = sample_windows(train, options.seq_len, options.batch, options.seed, state.step() + 1, 0);
  return model_attention_plan(weights, &state.lora, batch, options.attention);
}

template <class W, class T>
GptAttentionPlan next_plan_any(const W& weights, const TrainState<T>& state, const SftRows& train,
                               const TrainOptions& options) {
  return model_attention_plan(weights, &state.lora, detail::row_batches(train, options, state.step() + 1).micro[0],
                              options.attention);
}

template <class W, class T>
TrainOutcome train_any(const W& weights, TrainState<T>& state, const TrainValSplit& data, const TrainOptions& options,
                       const TrainCallbacks& callbacks) {
  validate_any(weights, state, data, options);
  LoraRun<W, Tokens> run(weights, state, data.val, options);
  return detail::run_updates(
      run, [&](std::int64_t step) { return detail::window_batches(data.train, options, step); }, options, callbacks);
}

template <class W, class T>
TrainOutcome train_any(const W& weights, TrainState<T>& state, const SftSplit& data, const TrainOptions& options,
                       const TrainCallbacks& callbacks) {
  validate_any(weights, state, data, options);
  LoraRun<W, SftRows> run(weights, state, data.val, options);
  return detail::run_updates(
      run, [&](std::int64_t step) { return detail::row_batches(data.train, options, step); }, options, callbacks);
}

}  // namespace

#define LORAFAST_FAMILY(Weights)                                                                                  \
  template <class T>                                                                                             \
  void validate_training(const Weights<T>& weights, const TrainState<T>& state, const TrainValSplit& data,       \
                         const TrainOptions& options) {                                                          \
    validate_any(weights, state, data, options);                                                                 \
  }                                                                                                              \
  template <class T>                                                                                             \
  GptAttentionPlan next_update_plan(const Weights<T>& weights, const TrainState<T>& state, const Tokens& train,  \
                                    const TrainOptions& options) {                                               \
    return next_plan_any(weights, state, train, options);                                                        \
  }                                                                                                              \
  template <class T>                                                                                             \
  TrainOutcome train(const Weights<T>& weights, TrainState<T>& state, const TrainValSplit& data,                 \
                     const TrainOptions& options, const TrainCallbacks& callbacks) {                             \
    return train_any(weights, state, data, options, callbacks);                                                  \
  }                                                                                                              \
  template <class T>                                                                                             \
  void validate_training(const Weights<T>& weights, const TrainState<T>& state, const SftSplit& data,            \
                         const TrainOptions& options) {                                                          \
    validate_any(weights, state, data, options);                                                                 \
  }                                                                                                              \
  template <class T>                                                                                             \
  GptAttentionPlan next_update_plan(const Weights<T>& weights, const TrainState<T>& state, const SftRows& train, \
                                    const TrainOptions& options) {                                               \
    return next_plan_any(weights, state, train, options);                                                        \
  }                                                                                                              \
  template <class T>                                                                                             \
  TrainOutcome train(const Weights<T>& weights, TrainState<T>& state, const SftSplit& data,                      \
                     const TrainOptions& options, const TrainCallbacks& callbacks) {                             \
    return train_any(weights, state, data, options, callbacks);                                                  \
  }
LORAFAST_FAMILY(GptWeights)
LORAFAST_FAMILY(LlamaWeights)
#undef LORAFAST_FAMILY

#define LORAFAST_INSTANTIATE(W, T)                                                                               \
  template double validation_loss<T>(const W<T>&, const GptLora<T>&, const Tokens&, const TrainOptions&);         \
  template void validate_training<T>(const W<T>&, const TrainState<T>&, const TrainValSplit&, const TrainOptions&); \
  template GptAttentionPlan next_update_plan<T>(const W<T>&, const TrainState<T>&, const Tokens&,                 \
                                                const TrainOptions&);                                             \
  template TrainOutcome train<T>(const W<T>&, TrainState<T>&, const TrainValSplit&, const TrainOptions&,           \
                                 const TrainCallbacks&);                                                          \
  template void validate_training<T>(const W<T>&, const TrainState<T>&, const SftSplit&, const TrainOptions&);    \
  template GptAttentionPlan next_update_plan<T>(const W<T>&, const TrainState<T>&, const SftRows&,                \
                                                const TrainOptions&);                                             \
  template TrainOutcome train<T>(const W<T>&, TrainState<T>&, const SftSplit&, const TrainOptions&,               \
                                 const TrainCallbacks&);
LORAFAST_INSTANTIATE(GptWeights, float)
LORAFAST_INSTANTIATE(GptWeights, double)
LORAFAST_INSTANTIATE(LlamaWeights, float)
LORAFAST_INSTANTIATE(LlamaWeights, double)
#undef LORAFAST_INSTANTIATE
template TrainState<float> init_train_state<float>(const GptConfig&, const LoraConfig&, std::uint64_t);
template TrainState<double> init_train_state<double>(const GptConfig&, const LoraConfig&, std::uint64_t);

}  // namespace lorafast
