// Attention with one method per head, as decided by the dispatcher (dispatch.hpp):
// exact heads share one call of the tiled kernels, fast and chained heads run the
// surrogate (fast_attention.hpp) at their certified degree.
#pragma once

#include <cstdint>
#include <vector>

#include "lorafast/attention.hpp"
#include "lorafast/dispatch.hpp"

namespace lorafast {

// The per-query-head plan for these inputs (params.q, params.k set): score bounds
// measured in O(N * L * D), then decide() for the params' shape. Throws as decide() does.
template <class T>
std::vector<HeadDecision> plan_heads(const AttentionParams<T>& params, const AttentionRequest& request);

// What plan_heads decides for Method::exact, without the pass over q and k: every
// head exact, its score bound and costs left 0 (unmeasured), for a caller that runs
// exact attention and measures the plan only when it is asked to report it.
std::vector<HeadDecision> exact_plan(std::int64_t heads);

// Each head by its planned method; the backward runs the forward's plan (a surrogate
// head's gradient is the exact gradient of the surrogate). Both check params and plan.

template <class T>
void planned_attention_fwd(const AttentionParams<T>& params, const std::vector<HeadDecision>& plan);
template <class T>
void planned_attention_bwd(const AttentionParams<T>& params, const std::vector<HeadDecision>& plan);

}  // namespace lorafast
