// Tiny random GPT-2 models, adapters and token batches for the model tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lorafast/gpt_loss.hpp"

namespace lorafast::testing {

struct TinyGptSpec {
  std::int64_t layers = 2, heads = 2, dim = 8, vocab = 11, positions = 9;
  std::uint64_t seed = 1;
};

GptConfig tiny_config(const TinyGptSpec& spec);

// GPT-2 tensor names ("transformer." + name when `prefixed`), F64, random values
// of O(1) activations: weights ~ N(0, 1/in), LN gains 1 + N(0, 0.1^2), biases N(0, 0.1^2).
TensorMap tiny_model_tensors(const TinyGptSpec& spec, bool prefixed);

// The adapters of `config`, initialised like PEFT and then with B ~ N(0, 0.5^2/R)
// so that every gradient term is non-zero (B = 0 would make d_A vanish).
template <class T>
GptLora<T> random_lora(const GptConfig& model, const LoraConfig& config, std::uint64_t seed);

// ||got - ref||_F / ||ref||_F over every adapter gradient (the targets `ref` has).
double lora_relative_difference(const std::vector<LoraLayer>& got, const std::vector<LoraLayer>& ref);

TokenBatch random_tokens(std::int64_t batch, std::int64_t seq_len, std::int64_t vocab, std::uint64_t seed);

}  // namespace lorafast::testing
