// The update loop shared by fine-tuning (train_loop.cpp) and pretraining
// (pretrain.cpp): per update, K micro-batches of seeded random windows, their
// gradients averaged, clipped, one optimizer step at the scheduled learning rate,
// periodic validation, the callbacks. What is trained is `Run`'s business:
//   std::int64_t step() const             updates completed so far
//   double add_micro_batch(const TokenBatch&)
//                                         forward + backward; adds the gradient to
//                                         the update's accumulator; returns the loss
//   double finish_update(std::int64_t micro_batches, double clip, double lr)
//                                         averages (divides by micro_batches when
//                                         > 1), clips, steps the optimizer, clears
//                                         the accumulator; returns the norm before clipping
//   double validation_loss() const
// and optionally
//   GptAttentionPlan take_plan()          the attention plan of the update's first
//                                         micro-batch (for StepReport::plan)
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/machine.hpp"
#include "core/scratch.hpp"
#include "lorafast/train_loop.hpp"

namespace lorafast::detail {

template <class Run>
TrainOutcome run_updates(Run& run, const Tokens& train, const TrainOptions& options, const TrainCallbacks& callbacks) {
  const LrSchedule schedule = options.schedule();
  // Every step allocates the same activations and buffers: keep them for the next
  // (up to the quarter of memory that activation keeping may use, Keep::all_if_fits).
  const scratch_pool::Retain reuse_steps(std::max(scratch_pool::retained_bytes(), physical_memory_bytes() / 4));
  while (run.step() < options.steps) {
    const auto start = std::chrono::steady_clock::now();
    const std::int64_t step = run.step() + 1;
    double loss = 0;
    for (std::int64_t micro = 0; micro < options.grad_accum; ++micro)
      loss += run.add_micro_batch(sample_windows(train, options.seq_len, options.batch, options.seed, step, micro));
    loss /= static_cast<double>(options.grad_accum);
    LF_CHECK(std::isfinite(loss), ErrorKind::cannot_meet, "the training loss became ", loss, " at step ", step,
             " (lower `lr` or set `clip`)");
    StepReport report;
    report.step = step;
    report.steps = options.steps;
    report.loss = loss;
    report.lr = schedule.at(step);
    report.grad_norm = run.finish_update(options.grad_accum, options.clip, report.lr);
    report.tokens = options.grad_accum * options.batch * options.seq_len;
    if constexpr (requires { run.take_plan(); }) report.plan = run.take_plan();
    if (options.eval_every > 0 && (step % options.eval_every == 0 || step == options.steps))
      report.val_loss = run.validation_loss();
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (callbacks.on_step) callbacks.on_step(report);
    if (run.step() < options.steps && callbacks.stop_requested && callbacks.stop_requested())
      return TrainOutcome::stopped;
  }
  return TrainOutcome::completed;
}

}  // namespace lorafast::detail
