#include "lorafast/planned_attention.hpp"

#include <memory>

#include "lorafast/certificate.hpp"
#include "lorafast/error.hpp"
#include "lorafast/fast_attention.hpp"

namespace lorafast {
namespace {

// Restricts params to the heads that run exactly; false when there are none.
template <class T>
bool with_exact_heads(AttentionParams<T>& params, const std::vector<HeadDecision>& plan, std::unique_ptr<bool[]>& mask) {
  mask = std::make_unique<bool[]>(plan.size());
  bool any = false;
  for (std::size_t h = 0; h < plan.size(); ++h) any |= (mask[h] = plan[h].method == Method::exact);
  params.head_enabled = mask.get();
  return any;
}

SurrogateConfig surrogate(const HeadDecision& d) {
  SurrogateConfig config;
  config.degree = d.degree;
  config.chunk = causal_chunk;
  return config;
}

}  // namespace

template <class T>
std::vector<HeadDecision> plan_heads(const AttentionParams<T>& params, const DispatchRequest& request) {
  return decide(measure_heads(params, causal_chunk), request);
}

template <class T>
void planned_attention_fwd(const AttentionParams<T>& params, const std::vector<HeadDecision>& plan) {
  LF_ASSERT(static_cast<std::int64_t>(plan.size()) == params.heads);
  AttentionParams<T> exact = params;
  std::unique_ptr<bool[]> mask;
  if (with_exact_heads(exact, plan, mask)) attention_fwd(exact);
  for (std::int64_t h = 0; h < params.heads; ++h)
    if (plan[h].method != Method::exact) fast_attention_fwd(params, h, surrogate(plan[h]));
}

template <class T>
void planned_attention_bwd(const AttentionParams<T>& params, const std::vector<HeadDecision>& plan) {
  LF_ASSERT(static_cast<std::int64_t>(plan.size()) == params.heads);
  AttentionParams<T> exact = params;
  std::unique_ptr<bool[]> mask;
  if (with_exact_heads(exact, plan, mask)) attention_bwd(exact);
  for (std::int64_t h = 0; h < params.heads; ++h) {
    if (plan[h].method == Method::fast) fast_attention_bwd(params, h, surrogate(plan[h]));
    if (plan[h].method == Method::chained) chained_attention_bwd(params, h, surrogate(plan[h]));
  }
}

template std::vector<HeadDecision> plan_heads(const AttentionParams<float>&, const DispatchRequest&);
template std::vector<HeadDecision> plan_heads(const AttentionParams<double>&, const DispatchRequest&);
template void planned_attention_fwd(const AttentionParams<float>&, const std::vector<HeadDecision>&);
template void planned_attention_fwd(const AttentionParams<double>&, const std::vector<HeadDecision>&);
template void planned_attention_bwd(const AttentionParams<float>&, const std::vector<HeadDecision>&);
template void planned_attention_bwd(const AttentionParams<double>&, const std::vector<HeadDecision>&);

}  // namespace lorafast
