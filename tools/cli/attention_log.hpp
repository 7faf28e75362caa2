// What `lorafast finetune` says about its attention: which method each layer's heads
// ran and why. For the first update of a session and whenever a layer's decision
// (method and degree of each head) changes, one line per such layer for the progress
// display, e.g.
//   attention layer 2 @ step 1: fast x3 (degree 6, F 924), exact x1 | G 0.84..2.9 | head 1: exact: G=2.9 ...
// (the reason is that of the head with the largest score bound G), and one row per
// head of those layers in OUT/attention_plan.csv:
//   step,layer,head,method,degree,features,score_bound,gradient_bound,reason
// (degree, features and gradient_bound empty for exact heads; reason quoted).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "lorafast/gpt_loss.hpp"
#include "step_csv.hpp"

namespace lorafast::cli {

class AttentionLog {
 public:
  // A new file (header only), or with resume_step > 0 the existing one cut to its
  // rows of steps <= resume_step.
  AttentionLog(const std::filesystem::path& path, std::int64_t resume_step);

  // Writes the rows of the layers whose decision changed and returns their lines.
  std::vector<std::string> record(std::int64_t step, const GptAttentionPlan& plan);

 private:
  StepCsv csv_;
  std::vector<std::string> decisions_;  // per layer, the last decision recorded
};

}  // namespace lorafast::cli
