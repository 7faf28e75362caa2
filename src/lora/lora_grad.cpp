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

// s of projection p; 0 when it is not adapted.
double scaling(const LoraAttentionInputs& in, const LoraAttentionOptions& opt, Projection p) {
  const auto& lora = in.lora[static_cast<int>(p)];
  return lora ? opt.scaling.factor(lora->rank()) : 0.0;
}

// n values of an f32 tensor rounded to bf16.
std::vector<BFloat16> bf16_copy(const Tensor& t) {
  std::vector<BFloat16> out(static_cast<std::size_t>(t.numel()));
  kernels::to_bf16({t.data<float>(), out.size()}, out);
  return out;
}

// X W^T + s (X A^T) B^T in mixed precision (LoraAttentionOptions::bf16): the base
// product from bf16 X and W, the adapter's term in f32; x is f32, x16 its bf16 copy.
Tensor projection_bf16(const LoraAttentionInputs& in, const LoraAttentionOptions& opt, const Tensor& x,
                       const std::vector<BFloat16>& x16, Projection p) {
  const int i = static_cast<int>(p);
  const std::int64_t rows = in.batch() * in.seq_len(), d = in.model_dim();
  const std::vector<BFloat16> w16 = bf16_copy(in.w[i].to(DType::f32));
  Tensor out(DType::f32, {in.batch(), in.seq_len(), d});
  kernels::gemm_bf16_rows(1.0f, {x16.data(), rows, d, d}, Op::trans, {w16.data(), d, d, d}, 0.0f,
                          token_rows<float>(out));
  if (const auto& lora = in.lora[i]) {
    const Tensor a = lora->a.to(DType::f32), b = lora->b.to(DType::f32);
    Tensor z(DType::f32, {rows, lora->rank()});
    gemm_rows(1.0f, token_rows<float>(x), Op::trans, matrix<float>(a), 0.0f, matrix<float>(z));  // Z = X A^T
    gemm_rows(static_cast<float>(scaling(in, opt, p)), matrix<float>(z), Op::trans, matrix<float>(b), 1.0f,
              token_rows<float>(out));  // + s Z B^T
  }
  return out;
}

// X W_eff^T for projection p, X already in the compute precision T: [N, L, D].
template <class T>
Tensor projection(const LoraAttentionInputs& in, const LoraAttentionOptions& opt, const Tensor& x, Projection p) {
  const int i = static_cast<int>(p);
  const Tensor w_eff = effective_weight<T>(in.w[i], in.lora[i], scaling(in, opt, p), x.dtype());
  Tensor out(x.dtype(), {in.batch(), in.seq_len(), in.model_dim()});
  gemm_rows(T(1), token_rows<T>(x), Op::trans, matrix<T>(w_eff), T(0), token_rows<T>(out));
  return out;
}

// The attention shape, scale and mask, with Q and K: all that planning reads.
template <class T>
AttentionParams<T> score_params(const LoraAttentionInputs& in, const LoraAttentionOptions& opt, const Tensor& q,
                                const Tensor& k) {
  AttentionParams<T> params;
  params.batch = in.batch();
  params.seq_len = in.seq_len();
  params.heads = opt.attention.heads;
  params.head_dim = in.model_dim() / params.heads;
  params.scale = opt.attention.resolved_scale(params.head_dim);
  params.causal = opt.attention.causal;
  params.q = q.data<T>();
  params.k = k.data<T>();
  return params;
}

template <class T>
LoraAttentionGrads grad(const LoraAttentionInputs& in, const LoraAttentionOptions& opt) {
  const DType dt = opt.dtype;
  const std::int64_t n = in.batch(), l = in.seq_len(), d = in.model_dim(), heads = opt.attention.heads;
  Tensor x = in.x.to(dt), y = in.y.to(dt);
  std::array<Tensor, 3> proj;  // Q, K, V: [N, L, D]
  if (opt.bf16) {  // validate() allows it with dtype f32 only
    const std::vector<BFloat16> x16 = bf16_copy(x);
    for (auto p : all_projections) proj[static_cast<int>(p)] = projection_bf16(in, opt, x, x16, p);
  } else {
    for (auto p : all_projections) proj[static_cast<int>(p)] = projection<T>(in, opt, x, p);
  }
  Tensor o(dt, {n, l, d}), lse(dt, {n, heads, l});
  std::array<Tensor, 3> grads{Tensor(dt, {n, l, d}), Tensor(dt, {n, l, d}), Tensor(dt, {n, l, d})};
  AttentionParams<T> params = score_params<T>(in, opt, proj[0], proj[1]);
  params.v = proj[2].data<T>();
  params.bf16_products = opt.bf16;
  params.o = o.data<T>();
  params.lse = lse.data<T>();
  LoraAttentionGrads out;
  out.heads = plan_heads(params, opt.request);
  planned_attention_fwd(params, out.heads);
  out.loss = residual_and_loss<T>(o, y);
  params.d_o = y.data<T>();
  params.d_q = grads[0].data<T>();
  params.d_k = grads[1].data<T>();
  params.d_v = grads[2].data<T>();
  planned_attention_bwd(params, out.heads);

  for (auto p : all_projections) {
    const int i = static_cast<int>(p);
    if (in.lora[i]) out.d_lora[i] = adapter_grad<T>(*in.lora[i], scaling(in, opt, p), x, grads[i], dt);
  }
  return out;
}

}  // namespace

std::vector<HeadDecision> lora_attention_plan(const LoraAttentionInputs& inputs, const LoraAttentionOptions& options) {
  validate(inputs, options);
  const Tensor x = inputs.x.to(DType::f64);
  const Tensor q = projection<double>(inputs, options, x, Projection::q);
  const Tensor k = projection<double>(inputs, options, x, Projection::k);
  const auto params = score_params<double>(inputs, options, q, k);
  return plan_heads(params, options.request);
}

LoraAttentionGrads lora_attention_grad(const LoraAttentionInputs& inputs, const LoraAttentionOptions& options) {
  validate(inputs, options);
  return options.dtype == DType::f32 ? grad<float>(inputs, options) : grad<double>(inputs, options);
}

}  // namespace lorafast
