// Attention with one method per head, as decided by the dispatcher (dispatch.hpp):
// exact heads share one call of the tiled kernels, fast and chained heads run the
// surrogate (fast_attention.hpp) at their certified degree.
#pragma once

#include <vector>

#include "lorafast/attention.hpp"
#include "lorafast/dispatch.hpp"

namespace lorafast {

// The per-head plan for these inputs (params.q, params.k set): score bounds measured
// in O(N * L * D), then decide(). Throws as decide() does.
template <class T>
std::vector<HeadDecision> plan_heads(const AttentionParams<T>& params, const DispatchRequest& request);

template <class T>
void planned_attention_fwd(const AttentionParams<T>& params, const std::vector<HeadDecision>& plan);
template <class T>
void planned_attention_bwd(const AttentionParams<T>& params, const std::vector<HeadDecision>& plan);

}  // namespace lorafast
