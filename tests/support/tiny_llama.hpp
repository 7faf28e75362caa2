// Tiny random Llama-family models (grouped-query heads, a head dim other than
// hidden / heads, optional q/k/v biases as qwen2, Gemma 3's parts) for the decoding tests.
#pragma once

#include <cstdint>
#include <string>

#include "lorafast/llama.hpp"

namespace lorafast::testing {

struct TinyLlamaSpec {
  std::string model_type = "llama";  // "qwen2": q/k/v biases; "gemma3_text": 2 layers, sliding then full
  std::int64_t layers = 2, heads = 4, kv_heads = 2, head_dim = 4, dim = 8, ffn = 12, vocab = 13, positions = 24;
  bool tied = false;
  std::uint64_t seed = 1;
};

// Parsed from a config.json text, weights from Hugging Face tensor names, so the
// model goes through the loader's checks: weights ~ N(0, 1/in), norm gains
// 1 + N(0, 0.2^2), biases N(0, 0.1^2), embeddings N(0, 1).
template <class T>
LlamaWeights<T> tiny_llama(const TinyLlamaSpec& spec);

}  // namespace lorafast::testing
