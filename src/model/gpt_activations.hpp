// The decoder's forward pass (decoder_activations.hpp) spelled for GPT-2 weights.
#pragma once

#include "model/decoder_activations.hpp"

namespace lorafast {

template <class T>
using GptActivations = DecoderActivations<T>;

template <class T>
void gpt_forward(const GptWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                 const AttentionRequest& attention, Keep keep, GptActivations<T>& act) {
  decoder_forward(decoder_view(weights), lora, batch, attention, keep, act);
}

}  // namespace lorafast
