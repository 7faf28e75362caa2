#include "ops/decode/decode_attention.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "lorafast/error.hpp"

namespace lorafast {

template <class T>
void decode_attention_fwd(const DecodeAttentionParams<T>& p) {
  LF_ASSERT(p.length >= 1 && p.head_dim >= 1 && p.kv_heads >= 1 && p.heads % p.kv_heads == 0 && p.scale > 0);
  LF_ASSERT(p.q != nullptr && p.k != nullptr && p.v != nullptr && p.o != nullptr);
  LF_ASSERT(p.window >= 0);
  const std::int64_t e = p.head_dim, group = p.heads / p.kv_heads, row = p.kv_heads * e;
  const std::int64_t first = p.window > 0 ? std::max<std::int64_t>(0, p.length - p.window) : 0;
#pragma omp parallel
  {
    std::vector<double> score(static_cast<std::size_t>(p.length)), acc(static_cast<std::size_t>(e));
#pragma omp for schedule(static)
    for (std::int64_t h = 0; h < p.heads; ++h) {
      const T* q = p.q + h * e;
      const std::int64_t offset = (h / group) * e;  // the K/V head of query head h
      double top = -INFINITY;
      for (std::int64_t j = first; j < p.length; ++j) {
        const T* k = p.k + j * row + offset;
        double dot = 0;
        for (std::int64_t c = 0; c < e; ++c) dot += static_cast<double>(q[c]) * static_cast<double>(k[c]);
        score[static_cast<std::size_t>(j)] = p.scale * dot;
        top = std::max(top, p.scale * dot);
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      double sum = 0;
      for (std::int64_t j = first; j < p.length; ++j) {
        const double w = std::exp(score[static_cast<std::size_t>(j)] - top);
        sum += w;
        const T* v = p.v + j * row + offset;
        for (std::int64_t c = 0; c < e; ++c) acc[static_cast<std::size_t>(c)] += w * static_cast<double>(v[c]);
      }
      for (std::int64_t c = 0; c < e; ++c) p.o[h * e + c] = static_cast<T>(acc[static_cast<std::size_t>(c)] / sum);
    }
  }
}

template void decode_attention_fwd<float>(const DecodeAttentionParams<float>&);
template void decode_attention_fwd<double>(const DecodeAttentionParams<double>&);

}  // namespace lorafast
