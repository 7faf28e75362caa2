// The oracle of the GPT-2 + LoRA loss: slow, obviously-correct double precision,
// never optimized. Adapters are merged into the weights (W_eff = W + s (B A)^T in
// the Conv1D layout) rather than applied as a low-rank side path, attention
// materialises the T x T probabilities, and every sum is a plain loop.
#pragma once

#include "lorafast/gpt_loss.hpp"

namespace lorafast::ref {

// Mean next-token cross-entropy (nats); `lora` may be nullptr.
double gpt_loss(const GptWeights<double>& weights, const GptLora<double>* lora, const TokenBatch& batch);

}  // namespace lorafast::ref
