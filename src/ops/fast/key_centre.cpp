// The centre the surrogate subtracts from the keys (fast_attention.hpp); the score
// bound of the certificate assumes the same centre.
#include <algorithm>

#include "lorafast/error.hpp"
#include "lorafast/fast_attention.hpp"
#include "ops/exact/head_views.hpp"

namespace lorafast {

std::int64_t centred_keys(std::int64_t seq_len, bool causal, std::int64_t chunk) {
  LF_ASSERT(seq_len >= 1 && chunk >= 1);
  return causal ? std::min(chunk, seq_len) : seq_len;
}

template <class T>
std::vector<double> mean_key(const AttentionParams<T>& params, std::int64_t n, std::int64_t g, std::int64_t chunk) {
  const AttentionParams<T> p = checked(params, AttentionUse::scores);
  const std::int64_t e = p.head_dim, count = centred_keys(p.seq_len, p.causal, chunk);
  const auto keys = exact::k_rows(p, n, g, 0, count);
  std::vector<double> c(static_cast<std::size_t>(e), 0.0);
  for (std::int64_t j = 0; j < count; ++j)
    for (std::int64_t m = 0; m < e; ++m) c[m] += static_cast<double>(keys(j, m));
  for (double& value : c) value /= static_cast<double>(count);
  return c;
}

template std::vector<double> mean_key(const AttentionParams<float>&, std::int64_t, std::int64_t, std::int64_t);
template std::vector<double> mean_key(const AttentionParams<double>&, std::int64_t, std::int64_t, std::int64_t);

}  // namespace lorafast
