// The LoRA fine-tuning loop: per update, K micro-batches of B seeded random windows
// (train_data.hpp), their gradients averaged, clipped to a global norm, one AdamW
// step at the scheduled learning rate; every `eval_every` updates the validation
// loss. Progress is reported through callbacks; the library never prints.
//
// Determinism: the windows depend only on (seed, step, micro-batch, window) and
// every kernel sums in a fixed order for a given thread count, so the same options,
// data and thread count give bit-identical losses and adapters, and resuming from
// a TrainState taken after step k continues exactly as an uninterrupted run.
//
// Data parallel (options.processes, distributed.hpp): of each micro-batch's `batch`
// windows (rows) process r takes the r-th share; the update's loss and gradient
// are summed over the processes in rank order, so every process takes the same
// optimizer step, and K processes train the adapters of one process up to the
// order of the sums.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "lorafast/dispatch.hpp"
#include "lorafast/distributed.hpp"
#include "lorafast/sft_rows.hpp"
#include "lorafast/train_data.hpp"
#include "lorafast/train_optimizer.hpp"

namespace lorafast {

struct TrainOptions {
  std::int64_t steps = 200;      // total updates (also the schedule's horizon)
  std::int64_t seq_len = 128;    // T
  std::int64_t batch = 8;        // B windows (rows) per micro-batch, of all processes together
  std::int64_t grad_accum = 1;   // K micro-batches per update
  double lr = 2e-4;              // peak learning rate
  std::int64_t warmup = 0;       // linear warmup updates
  double min_lr_ratio = 0.1;     // the cosine decays to min_lr_ratio * lr
  double clip = 1.0;             // global gradient norm bound; <= 0: no clipping
  AdamWOptions adamw;
  std::int64_t eval_every = 0;   // validation every N updates and after the last; 0: never
  std::int64_t val_windows = 64; // validation windows (instruction data: rows) evaluated, the first ones; 0: all
  std::uint64_t seed = 0;
  // The training forward and backward passes' attention; validation runs exact
  // attention, as `lorafast eval` does.
  AttentionRequest attention{.method = Method::automatic, .eps = 1e-3, .degree = std::nullopt, .cost = {}};
  Recompute recompute = Recompute::automatic;  // of each micro-batch's backward pass (gpt_loss.hpp)
  // --dtype bf16: the model's frozen matrices were stored in bf16 (store_frozen_bf16);
  // recorded so a resumed run continues in it. The adapters and AdamW state stay f32.
  bool bf16 = false;
  // The processes sharing each micro-batch (not saved in checkpoints: a run resumes
  // with any number of processes that divides `batch`). Validation runs on rank 0.
  Processes processes;

  LrSchedule schedule() const { return {lr, warmup, steps, min_lr_ratio}; }
  // Error(usage) naming the flag, Error(bad_input) for an odd --degree. Whether fast
  // or chained can certify --eps depends on the scores: that Error(cannot_meet) comes
  // from the update that plans them (or from next_update_plan).
  void validate() const;
};

template <class T>
struct TrainState {
  GptLora<T> lora;
  AdamWState<T> adamw;  // adamw.step: updates completed
  std::int64_t step() const { return adamw.step; }
};

// Fresh adapters (PEFT initialisation from `seed`) and zero moments.
template <class T>
TrainState<T> init_train_state(const GptConfig& model, const LoraConfig& lora, std::uint64_t seed);

struct StepReport {
  std::int64_t step = 0, steps = 0;  // this update (1-based) of `steps`
  double loss = 0.0;                 // mean training loss of its micro-batches
  double lr = 0.0;                   // learning rate of A (B: lr * lora_plus_ratio)
  double grad_norm = 0.0;            // before clipping
  std::int64_t tokens = 0;           // tokens of this update: K * B * T, or its rows' (not padding)
  double seconds = 0.0;              // wall time of this update (incl. validation)
  std::optional<double> val_loss;    // when validated after this update
  GptAttentionPlan plan;             // the attention plan of its first micro-batch
};

struct TrainCallbacks {
  std::function<void(const StepReport&)> on_step;  // after the state holds the update
  std::function<bool()> stop_requested;            // checked after each update
};

enum class TrainOutcome { completed, stopped };

// Everything train() checks before its first update: the options, --seq-len within
// the model's n_positions, the adapters against the model, a complete window in
// the training split and, when validating, in the validation split.
// validate_training_run: the same without adapters (pretraining).
void validate_training_run(const GptConfig& model, const TrainValSplit& data, const TrainOptions& options);
template <class T>
void validate_training(const GptWeights<T>& weights, const TrainState<T>& state, const TrainValSplit& data,
                       const TrainOptions& options);

// The attention plan of update state.step() + 1's first micro-batch (one forward
// pass): lets a caller refuse an uncertifiable --method fast before writing anything.
template <class T>
GptAttentionPlan next_update_plan(const GptWeights<T>& weights, const TrainState<T>& state, const Tokens& train,
                                  const TrainOptions& options);

// Runs updates state.step() + 1 .. options.steps (none when already there).
// Errors: those of validate_training(); Error(cannot_meet) if the loss diverges or
// fast / chained cannot certify --eps (the state then holds the last update done).
template <class T>
TrainOutcome train(const GptWeights<T>& weights, TrainState<T>& state, const TrainValSplit& data,
                   const TrainOptions& options, const TrainCallbacks& callbacks = {});

// The validation loss as train() computes it.
template <class T>
double validation_loss(const GptWeights<T>& weights, const GptLora<T>& lora, const Tokens& val,
                       const TrainOptions& options);

// Instruction data (sft_rows.hpp): per update K micro-batches of B rows in seeded
// epoch order (sft_row_indices), the loss the mean over the update's predicted
// tokens; options.seq_len bounds the rows (n_positions), validation is the mean
// over the first val_windows rows' predicted tokens.
template <class T>
void validate_training(const GptWeights<T>& weights, const TrainState<T>& state, const SftSplit& data,
                       const TrainOptions& options);
template <class T>
GptAttentionPlan next_update_plan(const GptWeights<T>& weights, const TrainState<T>& state, const SftRows& train,
                                  const TrainOptions& options);
template <class T>
TrainOutcome train(const GptWeights<T>& weights, TrainState<T>& state, const SftSplit& data,
                   const TrainOptions& options, const TrainCallbacks& callbacks = {});

// The same for the Llama family (llama.hpp).
template <class T>
void validate_training(const LlamaWeights<T>& weights, const TrainState<T>& state, const TrainValSplit& data,
                       const TrainOptions& options);
template <class T>
GptAttentionPlan next_update_plan(const LlamaWeights<T>& weights, const TrainState<T>& state, const Tokens& train,
                                  const TrainOptions& options);
template <class T>
TrainOutcome train(const LlamaWeights<T>& weights, TrainState<T>& state, const TrainValSplit& data,
                   const TrainOptions& options, const TrainCallbacks& callbacks = {});
template <class T>
double validation_loss(const LlamaWeights<T>& weights, const GptLora<T>& lora, const Tokens& val,
                       const TrainOptions& options);
template <class T>
void validate_training(const LlamaWeights<T>& weights, const TrainState<T>& state, const SftSplit& data,
                       const TrainOptions& options);
template <class T>
GptAttentionPlan next_update_plan(const LlamaWeights<T>& weights, const TrainState<T>& state, const SftRows& train,
                                  const TrainOptions& options);
template <class T>
TrainOutcome train(const LlamaWeights<T>& weights, TrainState<T>& state, const SftSplit& data,
                   const TrainOptions& options, const TrainCallbacks& callbacks = {});

}  // namespace lorafast
