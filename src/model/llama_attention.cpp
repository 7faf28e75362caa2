#include "model/llama_attention.hpp"

#include <algorithm>

#include "lorafast/planned_attention.hpp"
#include "model/gpt_activations.hpp"

namespace lorafast {
namespace {

// [M, K E] -> [M, H E]: query head h gets key/value head h / (H / K).
template <class T>
void repeat_heads(const LlamaAttentionParams<T>& p, const T* src, Activation<T>& dst) {
  const std::int64_t rows = p.batch * p.seq_len, e = p.head_dim, group = p.heads / p.kv_heads;
  dst.resize(static_cast<std::size_t>(rows * p.heads * e));
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t h = 0; h < p.heads; ++h) {
      const T* from = src + (r * p.kv_heads + h / group) * e;
      std::copy(from, from + e, dst.data() + (r * p.heads + h) * e);
    }
}

// [M, H E] -> [M, K E]: each key/value head sums the gradients of its group.
template <class T>
void sum_groups(const LlamaAttentionParams<T>& p, const Activation<T>& src, T* dst) {
  const std::int64_t rows = p.batch * p.seq_len, e = p.head_dim, group = p.heads / p.kv_heads;
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t kh = 0; kh < p.kv_heads; ++kh) {
      T* to = dst + (r * p.kv_heads + kh) * e;
      std::fill(to, to + e, T(0));
      for (std::int64_t g = 0; g < group; ++g) {
        const T* from = src.data() + (r * p.heads + kh * group + g) * e;
        for (std::int64_t c = 0; c < e; ++c) to[c] += from[c];
      }
    }
}

template <class T>
AttentionParams<T> full_heads(const LlamaAttentionParams<T>& p, const T* k, const T* v) {
  AttentionParams<T> a;
  a.batch = p.batch;
  a.seq_len = p.seq_len;
  a.heads = p.heads;
  a.head_dim = p.head_dim;
  a.scale = AttentionConfig{}.resolved_scale(p.head_dim);  // 1/sqrt(E), as transformers' head_dim**-0.5
  a.causal = true;
  a.q = p.q;
  a.k = k;
  a.v = v;
  a.o = p.o;
  a.lse = p.lse;
  return a;
}

}  // namespace

template <class T>
std::vector<HeadDecision> llama_attention_fwd(const LlamaAttentionParams<T>& p, const DispatchRequest& request) {
  Activation<T> k, v;
  repeat_heads(p, p.k, k);
  repeat_heads(p, p.v, v);
  const AttentionParams<T> a = full_heads(p, k.data(), v.data());
  auto plan = plan_heads(a, request);
  planned_attention_fwd(a, plan);
  return plan;
}

template <class T>
void llama_attention_bwd(const LlamaAttentionParams<T>& p, const std::vector<HeadDecision>& plan) {
  Activation<T> k, v, d_k, d_v;
  repeat_heads(p, p.k, k);
  repeat_heads(p, p.v, v);
  d_k.resize(k.size());
  d_v.resize(v.size());
  AttentionParams<T> a = full_heads(p, k.data(), v.data());
  a.d_o = p.d_o;
  a.d_q = p.d_q;
  a.d_k = d_k.data();
  a.d_v = d_v.data();
  planned_attention_bwd(a, plan);
  sum_groups(p, d_k, p.d_k);
  sum_groups(p, d_v, p.d_v);
}

template std::vector<HeadDecision> llama_attention_fwd<float>(const LlamaAttentionParams<float>&, const DispatchRequest&);
template std::vector<HeadDecision> llama_attention_fwd<double>(const LlamaAttentionParams<double>&,
                                                               const DispatchRequest&);
template void llama_attention_bwd<float>(const LlamaAttentionParams<float>&, const std::vector<HeadDecision>&);
template void llama_attention_bwd<double>(const LlamaAttentionParams<double>&, const std::vector<HeadDecision>&);

}  // namespace lorafast
