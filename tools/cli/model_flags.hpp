// The model flags shared by `grad` and `phase`: heads, mask, LoRA scaling, score
// scale, method, precision and error target (INTERFACE.md).
#pragma once

#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "lorafast/lora.hpp"

namespace lorafast::cli {

struct ModelFlags {
  std::string in;
  std::int64_t heads = 1;
  bool causal = false;
  std::optional<double> alpha;
  bool rslora = false;
  std::optional<double> scale;
  std::string method = "auto";
  double eps = 1e-3;
  std::optional<int> degree;
  std::string dtype = "f32";
  bool json = false;
  bool explain = false;

  void add_to(CLI::App& command);
  LoraAttentionOptions options() const;
  // An odd --degree is bad input (exit 3), checked before any file is read.
  void check_degree() const;
};

// An odd --degree is bad input (exit 3).
void check_even_degree(std::optional<int> degree);

// --method, --eps, --degree and the calibrated cost model, as one request.
AttentionRequest attention_request(const std::string& method, double eps, std::optional<int> degree);

}  // namespace lorafast::cli
