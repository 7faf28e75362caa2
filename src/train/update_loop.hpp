// The update loop shared by fine-tuning (train_loop.cpp) and pretraining
// (pretrain.cpp): per update, K micro-batches of seeded random windows, their
// gradients averaged, clipped, one optimizer step at the scheduled learning rate,
// periodic validation, the callbacks. What is trained is `Run`'s business:
//   std::int64_t step() const             updates completed so far
//   double add_micro_batch(const TokenBatch&)
//                                         forward + backward; adds the gradient to
//                                         the update's accumulator; returns the loss
//   double finish_update(std::int64_t divisor, double clip, double lr)
//                                         sums the gradient over the processes
//                                         (options.processes), divides it by divisor
//                                         when > 1, clips, steps the optimizer, clears
//                                         the accumulator; returns the norm before clipping
//   double validation_loss() const
// and optionally
//   GptAttentionPlan take_plan()          the attention plan of the update's first
//                                         micro-batch (for StepReport::plan)
// What is trained on is the batch source's business: UpdateBatches of the step.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <span>

#include "core/machine.hpp"
#include "core/scratch.hpp"
#include "lorafast/sft_rows.hpp"
#include "lorafast/train_loop.hpp"

namespace lorafast::detail {

// One update's micro-batches: the update's loss and gradient are the sum of theirs
// over every process divided by `divisor`; `tokens` real (not padding) tokens of
// every process.
struct UpdateBatches {
  std::vector<TokenBatch> micro;
  std::int64_t divisor = 1;
  std::int64_t tokens = 0;
};

// This process's share of a micro-batch's `batch` windows (rows): positions
// rank * batch / size onwards, batch / size of them.
inline std::int64_t share_begin(std::int64_t batch, const Processes& p) { return p.rank * (batch / p.size); }

// Text: K micro-batches of B seeded random windows, each's loss a mean over this
// process's windows; averaged over the micro-batches and the processes.
inline UpdateBatches window_batches(const Tokens& train, const TrainOptions& o, std::int64_t step) {
  const Processes& p = o.processes;
  UpdateBatches u{{}, o.grad_accum * p.size, o.grad_accum * o.batch * o.seq_len};
  for (std::int64_t micro = 0; micro < o.grad_accum; ++micro) {
    TokenBatch all = sample_windows(train, o.seq_len, o.batch, o.seed, step, micro);
    if (p.size > 1) {
      const auto window = o.seq_len + 1, first = share_begin(o.batch, p);
      all.batch = o.batch / p.size;
      all.tokens.erase(all.tokens.begin() + (first + all.batch) * window, all.tokens.end());
      all.tokens.erase(all.tokens.begin(), all.tokens.begin() + first * window);
    }
    u.micro.push_back(std::move(all));
  }
  return u;
}

// Instruction data: K micro-batches of B rows (sft_row_indices), each's summed loss
// over the whole update's predicted tokens (of every process), so the update's
// loss is their mean.
inline UpdateBatches row_batches(const SftRows& train, const TrainOptions& o, std::int64_t step) {
  const Processes& p = o.processes;
  UpdateBatches u;
  std::int64_t predicted = 0;
  for (std::int64_t micro = 0; micro < o.grad_accum; ++micro) {
    const auto rows = sft_row_indices(train.rows(), o.batch, o.grad_accum, o.seed, step, micro);
    for (std::int64_t r : rows) u.tokens += train.row_tokens(r);
    TokenBatch all = sft_batch(train, rows);
    predicted += all.targeted();
    u.micro.push_back(p.size == 1 ? std::move(all)
                                  : sft_batch(train, std::span(rows).subspan(share_begin(o.batch, p), o.batch / p.size)));
  }
  for (auto& b : u.micro) b.loss_tokens = std::max<std::int64_t>(predicted, 1);
  return u;
}

// `batches(step)`: the UpdateBatches of update `step`.
template <class Run, class Batches>
TrainOutcome run_updates(Run& run, const Batches& batches, const TrainOptions& options,
                         const TrainCallbacks& callbacks) {
  const LrSchedule schedule = options.schedule();
  // Every step allocates the same activations and buffers: keep them for the next
  // (up to the quarter of memory that activation keeping may use, Keep::all_if_fits).
  const scratch_pool::Retain reuse_steps(std::max(scratch_pool::retained_bytes(), physical_memory_bytes() / 4));
  while (run.step() < options.steps) {
    const auto start = std::chrono::steady_clock::now();
    const std::int64_t step = run.step() + 1;
    const UpdateBatches update = batches(step);
    double loss = 0;
    for (const auto& micro : update.micro) loss += run.add_micro_batch(micro);
    loss = sum_in_rank_order(loss, options.processes) / static_cast<double>(update.divisor);
    LF_CHECK(std::isfinite(loss), ErrorKind::cannot_meet, "the training loss became ", loss, " at step ", step,
             " (lower `lr` or set `clip`)");
    StepReport report;
    report.step = step;
    report.steps = options.steps;
    report.loss = loss;
    report.lr = schedule.at(step);
    report.grad_norm = run.finish_update(update.divisor, options.clip, report.lr);
    report.tokens = update.tokens;
    if constexpr (requires { run.take_plan(); }) report.plan = run.take_plan();
    if (options.eval_every > 0 && (step % options.eval_every == 0 || step == options.steps) &&
        options.processes.root())
      report.val_loss = run.validation_loss();
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (callbacks.on_step) callbacks.on_step(report);
    // Every process stops after the same update, when any was asked to.
    const bool stop = callbacks.stop_requested && callbacks.stop_requested();
    if (run.step() < options.steps && sum_in_rank_order(stop ? 1.0 : 0.0, options.processes) > 0)
      return TrainOutcome::stopped;
  }
  return TrainOutcome::completed;
}

}  // namespace lorafast::detail
