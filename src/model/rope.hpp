// Rotary position embedding (transformers' apply_rotary_pos_emb, rotate-half
// pairing): within each head, dimension i and i + E/2 (i < E/2) rotate by the angle
// t * inv_freq[i] of the token's position t in its window:
//   y_i = x_i cos - x_{i+E/2} sin,   y_{i+E/2} = x_{i+E/2} cos + x_i sin.
// The backward pass is the inverse rotation (the angle negated).
#pragma once

#include <cstdint>
#include <vector>

#include "lorafast/llama_config.hpp"

namespace lorafast {

// cos and sin of t * inv_freq[i] for t < seq_len, i < E/2, computed in double.
template <class T>
struct RopeTable {
  std::int64_t seq_len = 0, half = 0;  // T, E/2
  std::vector<T> cos, sin;             // [T, E/2] each
};
template <class T>
RopeTable<T> make_rope_table(const RopeConfig& rope, std::int64_t head_dim, std::int64_t seq_len);

template <class T>
struct RopeParams {
  std::int64_t rows = 0;      // N * T token rows; row r is at position r % T
  std::int64_t heads = 0;     // heads in a row
  const RopeTable<T>* table = nullptr;  // head dim E = 2 * table->half
  T* x = nullptr;             // [rows, heads * E], rotated in place (fwd) or back (bwd)
  const std::int32_t* positions = nullptr;  // [rows] in [0, T): row r at positions[r] instead
};

template <class T>
void rope_fwd(const RopeParams<T>& p);
template <class T>
void rope_bwd(const RopeParams<T>& p);  // x holds d_y on entry, d_x on return

}  // namespace lorafast
