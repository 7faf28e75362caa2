// Whether the backward pass keeps every block's activations (gpt_activations.hpp).
#include "core/machine.hpp"
#include "model/gpt_activations.hpp"

namespace lorafast {

Keep keep_for_backward(Recompute recompute) {
  switch (recompute) {
    case Recompute::always: return Keep::inputs;
    case Recompute::never: return Keep::all;
    case Recompute::automatic: return Keep::all_if_fits;
  }
  LF_ASSERT(false);
  return Keep::all;
}

Keep resolve_keep(Keep keep, std::int64_t layers, std::size_t block_bytes) {
  if (keep != Keep::all_if_fits) return keep;
  const std::size_t memory = physical_memory_bytes();
  if (memory == 0) return Keep::all;  // unknown: as before recomputation existed
  // A quarter leaves room for the backward pass's own buffers, the weights, the
  // optimizer state and whatever else the machine runs.
  const double budget = 0.25 * static_cast<double>(memory);
  return static_cast<double>(layers) * static_cast<double>(block_bytes) <= budget ? Keep::all : Keep::inputs;
}

}  // namespace lorafast
