// The LoRA attention gradient: projections with merged adapters, attention forward
// and backward with one method per head (planned_attention.hpp), then the LoRA chain
// rule (SPEC.md §2):
//   dB_p = s G_p^T (X A_p^T),   dA_p = s (G_p B_p)^T X,   G_p = dQ, dK or dV.
#include <omp.h>

#include "kernels/parallel_gemm.hpp"
#include "lorafast/lora.hpp"
#include "lorafast/planned_attention.hpp"

namespace lorafast {
namespace {

using kernels::gemm;
using kernels::gemm_rows;
using kernels::gemm_tn_rows;
using kernels::Op;

// All N*L token rows of an [N, L, D] tensor as one matrix.
template <class T>
MatrixView<T> token_rows(Tensor& t) {
  return {t.data<T>(), t.dim(0) * t.dim(1), t.dim(2), t.dim(2)};
}
template <class T>
MatrixView<const T> token_rows(const Tensor& t) {
  return {t.data<T>(), t.dim(0) * t.dim(1), t.dim(2), t.dim(2)};
}

// W_eff = W + s B A, in the compute precision.
template <class T>
Tensor effective_weight(const Tensor& w, const std::optional<LoraAdapter>& lora, double s, DType dtype) {
  Tensor w_eff = w.to(dtype);
  if (lora) {
    const Tensor a = lora->a.to(dtype), b = lora->b.to(dtype);
    gemm(Op::none, Op::none, static_cast<T>(s), matrix<T>(b), matrix<T>(a), T(1), matrix<T>(w_eff));
  }
  return w_eff;
}

// dO = O - Y written over Y; returns 1/2 ||dO||^2 accumulated in double.
template <class T>
double residual_and_loss(const Tensor& o, Tensor& y) {
  const T* po = o.data<T>();
  T* py = y.data<T>();
  double loss = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : loss)
  for (std::int64_t i = 0; i < y.numel(); ++i) {
    py[i] = po[i] - py[i];
    loss += 0.5 * static_cast<double>(py[i]) * static_cast<double>(py[i]);
  }
  return loss;
}

template <class T>
LoraAdapter adapter_grad(const LoraAdapter& lora, double s, const Tensor& x, const Tensor& g, DType dtype) {
  const Tensor a = lora.a.to(dtype), b = lora.b.to(dtype);
  const std::int64_t rows = x.dim(0) * x.dim(1), r = lora.rank(), d = x.dim(2);
  Tensor z(dtype, {rows, r}), gb(dtype, {rows, r});
  gemm_rows(T(1), token_rows<T>(x), Op::trans, matrix<T>(a), T(0), matrix<T>(z));  // Z = X A^T
  gemm_rows(T(1), token_rows<T>(g), Op::none, matrix<T>(b), T(0), matrix<T>(gb));   // G B
  LoraAdapter grad{Tensor(dtype, {r, d}), Tensor(dtype, {d, r})};
  gemm_tn_rows(static_cast<T>(s), token_rows<T>(g), matrix<T>(z), matrix<T>(grad.b));    // dB = s G^T Z
  gemm_tn_rows(static_cast<T>(s), matrix<T>(gb), token_rows<T>(x), matrix<T>(grad.a));  // dA = s (G B)^T X
  return grad;
}

DispatchRequest dispatch_request(const LoraAttentionOptions& opt, std::int64_t batch, std::int64_t seq_len,
                                 std::int64_t head_dim) {
  DispatchRequest r;
  r.requested = opt.method;
  r.eps = opt.eps;
  r.degree = opt.degree;
  r.seq_len = seq_len;
  r.head_dim = head_dim;
  r.batch = batch;
  r.causal = opt.attention.causal;
  r.cost = opt.cost;
  return r;
}

template <class T>
LoraAttentionGrads grad(const LoraAttentionInputs& in, const LoraAttentionOptions& opt) {
  const DType dt = opt.dtype;
  const std::int64_t n = in.batch(), l = in.seq_len(), d = in.model_dim(), heads = opt.attention.heads;
  Tensor x = in.x.to(dt), y = in.y.to(dt);
  std::array<Tensor, 3> proj;  // Q, K, V: [N, L, D]
  std::array<double, 3> s{};
  for (auto p : all_projections) {
    const int i = static_cast<int>(p);
    s[i] = in.lora[i] ? opt.scaling.factor(in.lora[i]->rank()) : 0.0;
    const Tensor w_eff = effective_weight<T>(in.w[i], in.lora[i], s[i], dt);
    proj[i] = Tensor(dt, {n, l, d});
    gemm_rows(T(1), token_rows<T>(x), Op::trans, matrix<T>(w_eff), T(0), token_rows<T>(proj[i]));
  }
  Tensor o(dt, {n, l, d}), lse(dt, {n, heads, l});
  std::array<Tensor, 3> grads{Tensor(dt, {n, l, d}), Tensor(dt, {n, l, d}), Tensor(dt, {n, l, d})};
  AttentionParams<T> params;
  params.batch = n;
  params.seq_len = l;
  params.heads = heads;
  params.head_dim = d / heads;
  params.scale = opt.attention.resolved_scale(params.head_dim);
  params.causal = opt.attention.causal;
  params.q = proj[0].data<T>();
  params.k = proj[1].data<T>();
  params.v = proj[2].data<T>();
  params.o = o.data<T>();
  params.lse = lse.data<T>();
  LoraAttentionGrads out;
  out.heads = plan_heads(params, dispatch_request(opt, n, l, params.head_dim));
  planned_attention_fwd(params, out.heads);
  out.loss = residual_and_loss<T>(o, y);
  params.d_o = y.data<T>();
  params.d_q = grads[0].data<T>();
  params.d_k = grads[1].data<T>();
  params.d_v = grads[2].data<T>();
  planned_attention_bwd(params, out.heads);

  for (auto p : all_projections) {
    const int i = static_cast<int>(p);
    if (in.lora[i]) out.d_lora[i] = adapter_grad<T>(*in.lora[i], s[i], x, grads[i], dt);
  }
  return out;
}

}  // namespace

LoraAttentionGrads lora_attention_grad(const LoraAttentionInputs& inputs, const LoraAttentionOptions& options) {
  validate(inputs, options);
  return options.dtype == DType::f32 ? grad<float>(inputs, options) : grad<double>(inputs, options);
}

}  // namespace lorafast
