#include "lorafast/fast_attention.hpp"

#include <vector>

#include "lorafast/error.hpp"
#include "ops/exact/head_views.hpp"
#include "ops/fast/fast_paths.hpp"
#include "ops/kv_grads.hpp"

namespace lorafast {

namespace {
void check_config(const SurrogateConfig& config) {
  LF_CHECK(config.degree >= 0 && config.degree % 2 == 0, ErrorKind::bad_input, "Taylor degree ", config.degree,
           " must be even: odd degrees can make the softmax normaliser negative");
  LF_CHECK(config.chunk >= 1, ErrorKind::usage, "chunk size must be positive");
}

// The paths differentiate through the centred keys k'_j = k_j - c; the surrogate
// (unlike softmax) also depends on the keys that c averages (the first W, see
// centred_keys), so d k_j = d k'_j - [j < W] (1/W) sum over all j' of d k'_j'.
template <class T>
void through_mean_key(const AttentionParams<T>& p, std::int64_t head, std::int64_t chunk) {
  const std::int64_t l = p.seq_len, e = p.head_dim;
  const std::int64_t w = centred_keys(l, p.causal, chunk);
#pragma omp parallel for schedule(static)
  for (std::int64_t n = 0; n < p.batch; ++n) {
    const auto d_k = exact::d_k_rows(p, n, p.kv_head(head), 0, l);
    std::vector<double> mean(static_cast<std::size_t>(e), 0.0);
    for (std::int64_t j = 0; j < l; ++j)
      for (std::int64_t m = 0; m < e; ++m) mean[m] += static_cast<double>(d_k(j, m));
    for (std::int64_t m = 0; m < e; ++m) mean[m] /= static_cast<double>(w);
    for (std::int64_t j = 0; j < w; ++j)
      for (std::int64_t m = 0; m < e; ++m) d_k(j, m) -= static_cast<T>(mean[m]);
  }
}

template <class T>
AttentionParams<T> checked_head(const AttentionParams<T>& params, std::int64_t head, AttentionUse use) {
  const AttentionParams<T> p = checked(params, use);
  LF_CHECK(head >= 0 && head < p.heads, ErrorKind::usage, "attention: head ", head, " out of range [0, ", p.heads, ")");
  LF_CHECK(!p.masked(), ErrorKind::usage, "attention: the surrogate cannot honour the sliding-window or document mask");
  return p;
}
}  // namespace

template <class T>
void fast_attention_fwd(const AttentionParams<T>& params, std::int64_t head, const SurrogateConfig& config) {
  const AttentionParams<T> p = checked_head(params, head, AttentionUse::forward);
  check_config(config);
  const TaylorFeatures phi(p.head_dim, config.degree);
  p.causal ? fast::causal_fwd(p, head, config, phi) : fast::bidir_fwd(p, head, config, phi);
}

template <class T>
void fast_attention_bwd(const AttentionParams<T>& params, std::int64_t head, const SurrogateConfig& config) {
  check_config(config);
  const TaylorFeatures phi(params.head_dim, config.degree);
  with_kv_grads_added(checked_head(params, head, AttentionUse::backward), head, [&](const AttentionParams<T>& p) {
    p.causal ? fast::causal_bwd(p, head, config, phi) : fast::bidir_bwd(p, head, config, phi);
    if (config.center_keys) through_mean_key(p, head, config.chunk);
  });
}

template void fast_attention_fwd(const AttentionParams<float>&, std::int64_t, const SurrogateConfig&);
template void fast_attention_fwd(const AttentionParams<double>&, std::int64_t, const SurrogateConfig&);
template void fast_attention_bwd(const AttentionParams<float>&, std::int64_t, const SurrogateConfig&);
template void fast_attention_bwd(const AttentionParams<double>&, std::int64_t, const SurrogateConfig&);

}  // namespace lorafast
