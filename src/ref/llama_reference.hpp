// The oracle of the Llama-family ops: slow, obviously-correct double precision,
// written from the transformers definitions (LlamaRMSNorm, apply_rotary_pos_emb with
// rotate_half, LlamaMLP's act_fn(gate) * up), never optimized. Row-major vectors.
#pragma once

#include <cstdint>
#include <vector>

#include "lorafast/llama_config.hpp"

namespace lorafast::ref {

// y = weight * x / sqrt(mean(x^2) + eps), per row of [rows, dim].
std::vector<double> rms_norm(const std::vector<double>& x, const std::vector<double>& weight, std::int64_t dim,
                             double eps);

// x * cos + rotate_half(x) * sin per head of [rows, heads * E], cos/sin of
// cat(freqs, freqs), freqs = t * inv_freq, t = row % seq_len.
std::vector<double> rope(const std::vector<double>& x, const RopeConfig& config, std::int64_t heads,
                         std::int64_t head_dim, std::int64_t seq_len);

// silu(gate) * up.
std::vector<double> swiglu(const std::vector<double>& gate, const std::vector<double>& up);

}  // namespace lorafast::ref
