// The tensor names of `lorafast grad` files (INTERFACE.md): a case file in, a
// gradient file out.
#pragma once

#include <string>

#include "lorafast/lora.hpp"
#include "lorafast/safetensors.hpp"

namespace lorafast {

// x, y ([N, L, D] or [L, D]), w_q, w_k, w_v, and optional lora_a_p / lora_b_p pairs.
// Throws Error(bad_input) naming a missing, unpaired or unknown lora_* tensor; shapes
// are checked by validate(). `origin` prefixes messages (usually the file name).
LoraAttentionInputs grad_inputs_from_tensors(TensorMap tensors, const std::string& origin);
TensorMap tensors_from_grad_inputs(const LoraAttentionInputs& inputs);

// loss ([1]) and d_lora_a_p, d_lora_b_p for every adapted p.
TensorMap tensors_from_grads(const LoraAttentionGrads& grads, DType dtype);

}  // namespace lorafast
