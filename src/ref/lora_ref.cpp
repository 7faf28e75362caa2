#include <vector>

#include "ref/reference.hpp"

namespace lorafast::ref {
namespace {

// C = A B^T for dense row-major matrices (rows x inner) and (cols x inner).
Tensor times_transposed(MatrixView<const double> a, MatrixView<const double> b) {
  Tensor c(DType::f64, {a.rows, b.rows});
  auto cv = matrix<double>(c);
  for (std::int64_t i = 0; i < a.rows; ++i)
    for (std::int64_t j = 0; j < b.rows; ++j) {
      double acc = 0.0;
      for (std::int64_t m = 0; m < a.cols; ++m) acc += a(i, m) * b(j, m);
      cv(i, j) = acc;
    }
  return c;
}

// W_eff = W + s B A.
Tensor effective_weight(const Tensor& w, const std::optional<LoraAdapter>& lora, double s) {
  Tensor w_eff = w.to(DType::f64);
  if (!lora) return w_eff;
  const Tensor a = lora->a.to(DType::f64), b = lora->b.to(DType::f64);
  auto wv = matrix<double>(w_eff);
  auto av = matrix<double>(a), bv = matrix<double>(b);
  for (std::int64_t i = 0; i < wv.rows; ++i)
    for (std::int64_t j = 0; j < wv.cols; ++j)
      for (std::int64_t r = 0; r < av.rows; ++r) wv(i, j) += s * bv(i, r) * av(r, j);
  return w_eff;
}

}  // namespace

LoraAttentionGrads lora_attention_grad(const LoraAttentionInputs& in, const LoraAttentionOptions& opt) {
  const std::int64_t n = in.batch(), l = in.seq_len(), d = in.model_dim();
  const Tensor x = in.x.to(DType::f64), y = in.y.to(DType::f64);
  std::array<double, 3> s{};
  std::array<Tensor, 3> w_eff, d_w;
  for (auto p : all_projections) {
    const int i = static_cast<int>(p);
    s[i] = in.lora[i] ? opt.scaling.factor(in.lora[i]->rank()) : 0.0;
    w_eff[i] = effective_weight(in.w[i], in.lora[i], s[i]);
    d_w[i] = Tensor(DType::f64, {d, d});
  }
  LoraAttentionGrads out;
  for (std::int64_t b = 0; b < n; ++b) {
    const auto xb = matrix<double>(x, b), yb = matrix<double>(y, b);
    std::array<Tensor, 3> proj, grad;
    for (int i = 0; i < 3; ++i) {
      proj[i] = times_transposed(xb, matrix<double>(w_eff[i]));  // Q = X W_eff^T
      grad[i] = Tensor(DType::f64, {l, d});
    }
    AttentionProblem problem{matrix<double>(proj[0]), matrix<double>(proj[1]), matrix<double>(proj[2]),
                             opt.attention.heads, opt.attention.resolved_scale(d / opt.attention.heads),
                             opt.attention.causal};
    Tensor o(DType::f64, {l, d});
    attention_fwd(problem, matrix<double>(o));
    Tensor d_o(DType::f64, {l, d});
    auto ov = matrix<double>(o), dov = matrix<double>(d_o);
    for (std::int64_t r = 0; r < l; ++r)
      for (std::int64_t c = 0; c < d; ++c) {
        dov(r, c) = ov(r, c) - yb(r, c);
        out.loss += 0.5 * dov(r, c) * dov(r, c);
      }
    attention_bwd(problem, matrix<double>(d_o), matrix<double>(grad[0]), matrix<double>(grad[1]),
                  matrix<double>(grad[2]));
    // dW_p += G_p^T X
    for (int i = 0; i < 3; ++i) {
      auto gv = matrix<double>(grad[i]);
      auto dw = matrix<double>(d_w[i]);
      for (std::int64_t r = 0; r < d; ++r)
        for (std::int64_t c = 0; c < d; ++c)
          for (std::int64_t t = 0; t < l; ++t) dw(r, c) += gv(t, r) * xb(t, c);
    }
  }
  // dB = s dW A^T,  dA = s B^T dW
  for (auto p : all_projections) {
    const int i = static_cast<int>(p);
    if (!in.lora[i]) continue;
    const Tensor a = in.lora[i]->a.to(DType::f64), b = in.lora[i]->b.to(DType::f64);
    const std::int64_t r = a.dim(0);
    LoraAdapter g{Tensor(DType::f64, {r, d}), Tensor(DType::f64, {d, r})};
    auto dw = matrix<double>(d_w[i]);
    auto av = matrix<double>(a), bv = matrix<double>(b);
    auto da = matrix<double>(g.a), db = matrix<double>(g.b);
    for (std::int64_t row = 0; row < d; ++row)
      for (std::int64_t col = 0; col < d; ++col)
        for (std::int64_t k = 0; k < r; ++k) {
          db(row, k) += s[i] * dw(row, col) * av(k, col);
          da(k, col) += s[i] * bv(row, k) * dw(row, col);
        }
    out.d_lora[i] = std::move(g);
  }
  return out;
}

}  // namespace lorafast::ref
