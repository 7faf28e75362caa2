// Named gradient cases shared by tests, benchmarks and the CLI (`lorafast case`).
// Name form: grad/{causal|bidir}/N{n}/L{l}/E{e}/H{h}/R{r}/{q|k|v subset}, e.g.
// "grad/causal/N1/L97/E5/H3/R8/qkv". N and R may be omitted when parsing (N1, R4).
#pragma once

#include <cstdint>
#include <string>

#include "lorafast/lora.hpp"

namespace lorafast {

struct CaseSpec {
  std::int64_t batch = 1;     // N
  std::int64_t seq_len = 16;  // L
  std::int64_t head_dim = 8;  // E
  std::int64_t heads = 1;     // H
  std::int64_t rank = 4;      // R
  bool causal = false;
  std::string adapted = "qv";  // subset of "qkv", in that order
  std::uint64_t seed = 0;

  std::string name() const;
  static CaseSpec parse(const std::string& name);  // throws Error(usage) on a malformed name
  LoraAttentionOptions options(DType dtype) const;  // heads, causal, default scale and alpha
};

// Random inputs for the case (f64; convert as needed): X, Y ~ N(0, 1),
// W ~ N(0, 1/D), A ~ N(0, 1/D), B ~ N(0, 1/R) (nonzero so every gradient is exercised).
// `weight_gain` multiplies W_q, W_k and their B, scaling the attention scores.
LoraAttentionInputs make_case(const CaseSpec& spec, double weight_gain = 1.0);

}  // namespace lorafast
