#include "lorafast/planned_attention.hpp"

#include <algorithm>
#include <memory>

#include "lorafast/certificate.hpp"
#include "lorafast/error.hpp"
#include "lorafast/fast_attention.hpp"
#include "ops/exact/head_views.hpp"

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
  config.chunk = d.chunk;
  return config;
}

template <class T>
void check_plan(const AttentionParams<T>& p, const std::vector<HeadDecision>& plan) {
  LF_CHECK(static_cast<std::int64_t>(plan.size()) == p.heads, ErrorKind::usage, "attention: the plan has ",
           plan.size(), " heads, the params ", p.heads);
  for (const HeadDecision& d : plan) {
    LF_CHECK(d.method == Method::exact || (d.degree >= 0 && d.degree % 2 == 0 && d.chunk >= 1), ErrorKind::usage,
             "attention: the plan's ", method_name(d.method), " head has no even degree or no chunk");
    LF_CHECK(d.method == Method::exact || !p.masked(), ErrorKind::usage, "attention: the plan's ",
             method_name(d.method), " head cannot honour the sliding-window or document mask");
  }
}

// Zeroes d_k and d_v, so that every query head can add its share.
template <class T>
void zero_kv_grads(const AttentionParams<T>& p) {
  for (std::int64_t n = 0; n < p.batch; ++n)
    for (std::int64_t g = 0; g < p.kv_head_count(); ++g)
      for (const auto& grad : {exact::d_k_rows(p, n, g, 0, p.seq_len), exact::d_v_rows(p, n, g, 0, p.seq_len)})
        for (std::int64_t j = 0; j < grad.rows; ++j) std::fill(grad.row(j), grad.row(j) + grad.cols, T(0));
}

}  // namespace

template <class T>
std::vector<HeadDecision> plan_heads(const AttentionParams<T>& params, const AttentionRequest& request) {
  const AttentionParams<T> p = checked(params, AttentionUse::scores);
  // Every decision carries the chunk its scores were measured with, so the run uses the same.
  return decide(measure_heads(p, causal_chunk), request,
                {p.batch, p.seq_len, p.head_dim, p.causal, p.masked(), p.bf16_products});
}

std::vector<HeadDecision> exact_plan(std::int64_t heads) {
  HeadDecision d;
  d.reason = "exact: requested (method exact; scores not measured)";
  return std::vector<HeadDecision>(static_cast<std::size_t>(heads), d);
}

template <class T>
void planned_attention_fwd(const AttentionParams<T>& params, const std::vector<HeadDecision>& plan) {
  const AttentionParams<T> p = checked(params, AttentionUse::forward);
  check_plan(p, plan);
  AttentionParams<T> exact = p;
  std::unique_ptr<bool[]> mask;
  if (with_exact_heads(exact, plan, mask)) attention_fwd(exact);
  for (std::int64_t h = 0; h < p.heads; ++h)
    if (plan[h].method != Method::exact) fast_attention_fwd(p, h, surrogate(plan[h]));
}

template <class T>
void planned_attention_bwd(const AttentionParams<T>& params, const std::vector<HeadDecision>& plan) {
  AttentionParams<T> p = checked(params, AttentionUse::backward);
  check_plan(p, plan);
  const bool all_exact = std::all_of(plan.begin(), plan.end(), [](const HeadDecision& d) { return d.method == Method::exact; });
  // Grouped heads sent to several methods (or any surrogate head, which adds its
  // share): every method adds into zeroed K/V gradients.
  if (p.kv_head_count() != p.heads && !all_exact && !p.add_kv_grads) {
    zero_kv_grads(p);
    p.add_kv_grads = true;
  }
  AttentionParams<T> exact = p;
  std::unique_ptr<bool[]> mask;
  if (with_exact_heads(exact, plan, mask)) attention_bwd(exact);
  for (std::int64_t h = 0; h < p.heads; ++h) {
    if (plan[h].method == Method::fast) fast_attention_bwd(p, h, surrogate(plan[h]));
    if (plan[h].method == Method::chained) chained_attention_bwd(p, h, surrogate(plan[h]));
  }
}

template std::vector<HeadDecision> plan_heads(const AttentionParams<float>&, const AttentionRequest&);
template std::vector<HeadDecision> plan_heads(const AttentionParams<double>&, const AttentionRequest&);
template void planned_attention_fwd(const AttentionParams<float>&, const std::vector<HeadDecision>&);
template void planned_attention_fwd(const AttentionParams<double>&, const std::vector<HeadDecision>&);
template void planned_attention_bwd(const AttentionParams<float>&, const std::vector<HeadDecision>&);
template void planned_attention_bwd(const AttentionParams<double>&, const std::vector<HeadDecision>&);

}  // namespace lorafast
