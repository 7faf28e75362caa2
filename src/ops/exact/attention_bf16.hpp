// The exact kernels with bf16 products (AttentionParams::bf16_products), for CPUs
// where bf16_arithmetic(): attention_fwd and attention_bwd send f32 params here after
// checked(). Same tiles, schedule and f32 softmax as the f32 kernels; the operands of
// the tile products are rounded to bf16 in the dot-pair layout (pair_copies.hpp).
#pragma once

#include "lorafast/attention.hpp"

namespace lorafast::exact {

void attention_fwd_bf16(const AttentionParams<float>& p);
void attention_bwd_bf16(const AttentionParams<float>& p);

}  // namespace lorafast::exact
