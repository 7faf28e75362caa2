// Backward of the token (and GPT-2's position) embedding lookup
//   x0[n, t] = wte[token(n, t)] (+ wpe[position(n, t)]):
// d_wte[token] += d_x0[n, t], d_wpe[p] += the d_x0 of the rows at position p. Each thread owns a
// block of columns and adds the rows in order, so the sums are deterministic.
#pragma once

#include "kernels/column_split.hpp"
#include "lorafast/gpt_loss.hpp"

namespace lorafast {

// d_x [N T, D]; d_wte [V, D] accumulates; d_wpe [T, D] accumulates, nullptr: no
// positions; `positions` the rows' positions (TokenBatch::positions; empty: t).
template <class T>
void token_embedding_bwd(const TokenBatch& batch, const std::vector<std::int32_t>& positions, std::int64_t d,
                         const T* d_x, T* d_wte, T* d_wpe) {
  kernels::for_column_blocks(d, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t row = 0; row < batch.predicted(); ++row) {
      const std::int64_t n = row / batch.seq_len, t = row % batch.seq_len;
      const std::int64_t at = positions.empty() ? t : positions[static_cast<std::size_t>(row)];
      T* tok = d_wte + static_cast<std::int64_t>(batch.at(n, t)) * d;
      const T* g = d_x + row * d;
      for (std::int64_t c = c0; c < c1; ++c) tok[c] += g[c];
      if (d_wpe != nullptr)
        for (std::int64_t c = c0; c < c1; ++c) d_wpe[at * d + c] += g[c];
    }
  });
}

}  // namespace lorafast
