// The fast path's two mask variants, behind fast_attention_fwd / _bwd.
#pragma once

#include "lorafast/fast_attention.hpp"
#include "lorafast/features.hpp"

namespace lorafast::fast {

template <class T>
void bidir_fwd(const AttentionParams<T>& p, std::int64_t h, const SurrogateConfig& config, const TaylorFeatures& phi);
template <class T>
void bidir_bwd(const AttentionParams<T>& p, std::int64_t h, const SurrogateConfig& config, const TaylorFeatures& phi);
template <class T>
void causal_fwd(const AttentionParams<T>& p, std::int64_t h, const SurrogateConfig& config, const TaylorFeatures& phi);
template <class T>
void causal_bwd(const AttentionParams<T>& p, std::int64_t h, const SurrogateConfig& config, const TaylorFeatures& phi);

}  // namespace lorafast::fast
