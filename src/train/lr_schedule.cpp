// Linear warmup, then a half cosine down to a floor.
#include <algorithm>
#include <cmath>
#include <numbers>

#include "lorafast/train_optimizer.hpp"

namespace lorafast {

double LrSchedule::at(std::int64_t step) const {
  if (warmup > 0 && step <= warmup) return peak * static_cast<double>(std::max<std::int64_t>(step, 1)) / static_cast<double>(warmup);
  const double floor = floor_ratio * peak;
  const std::int64_t decay_steps = total - warmup;
  if (decay_steps <= 0) return floor;
  const double progress = std::clamp(static_cast<double>(step - warmup) / static_cast<double>(decay_steps), 0.0, 1.0);
  return floor + (peak - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

void LrSchedule::validate() const {
  constexpr auto usage = ErrorKind::usage;
  LF_CHECK(std::isfinite(peak) && peak > 0, usage, "`lr` must be a positive number, got ", peak);
  LF_CHECK(warmup >= 0, usage, "`warmup` must be >= 0, got ", warmup);
  LF_CHECK(total >= 0, usage, "`steps` must be >= 0, got ", total);
  LF_CHECK(std::isfinite(floor_ratio) && floor_ratio >= 0 && floor_ratio <= 1, usage,
           "`min_lr_ratio` must be in [0, 1], got ", floor_ratio);
}

}  // namespace lorafast
