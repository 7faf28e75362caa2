#include "lorafast/fast_attention.hpp"

#include "ops/fast/fast_paths.hpp"

namespace lorafast {

namespace {
void check_config(const SurrogateConfig& config) {
  LF_CHECK(config.degree >= 0 && config.degree % 2 == 0, ErrorKind::bad_input, "Taylor degree ", config.degree,
           " must be even: odd degrees can make the softmax normaliser negative");
  LF_CHECK(config.chunk >= 1, ErrorKind::usage, "chunk size must be positive");
}
}  // namespace

template <class T>
void fast_attention_fwd(const AttentionParams<T>& p, std::int64_t head, const SurrogateConfig& config) {
  check_config(config);
  const TaylorFeatures phi(p.head_dim, config.degree);
  p.causal ? fast::causal_fwd(p, head, config, phi) : fast::bidir_fwd(p, head, config, phi);
}

template <class T>
void fast_attention_bwd(const AttentionParams<T>& p, std::int64_t head, const SurrogateConfig& config) {
  check_config(config);
  const TaylorFeatures phi(p.head_dim, config.degree);
  p.causal ? fast::causal_bwd(p, head, config, phi) : fast::bidir_bwd(p, head, config, phi);
}

template void fast_attention_fwd(const AttentionParams<float>&, std::int64_t, const SurrogateConfig&);
template void fast_attention_fwd(const AttentionParams<double>&, std::int64_t, const SurrogateConfig&);
template void fast_attention_bwd(const AttentionParams<float>&, std::int64_t, const SurrogateConfig&);
template void fast_attention_bwd(const AttentionParams<double>&, std::int64_t, const SurrogateConfig&);

}  // namespace lorafast
