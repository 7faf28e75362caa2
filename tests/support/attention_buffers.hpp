// Random q, k, v, dO and output buffers for one attention op, in the op's layout.
#pragma once

#include <random>

#include "lorafast/attention.hpp"
#include "lorafast/tensor.hpp"
#include "ref/reference.hpp"

namespace lorafast::testing {

struct AttentionBuffers {
  std::int64_t batch, seq_len, heads, head_dim;
  Tensor q, k, v, d_o, o, lse, d_q, d_k, d_v;  // [N, L, D] (lse [N, H, L]), f64

  // Q and K entries ~ N(0, score_std): with beta = 1/sqrt(E), beta q.k has std score_std.
  AttentionBuffers(std::int64_t n, std::int64_t l, std::int64_t h, std::int64_t e, double score_std, std::uint64_t seed)
      : batch(n), seq_len(l), heads(h), head_dim(e) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    auto random = [&](double std_dev) {
      Tensor t(DType::f64, {n, l, h * e});
      for (std::int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = std_dev * normal(rng);
      return t;
    };
    const double qk_std = std::sqrt(score_std);
    q = random(qk_std);
    k = random(qk_std);
    v = random(1.0);
    d_o = random(1.0);
    for (Tensor* t : {&o, &d_q, &d_k, &d_v}) *t = Tensor(DType::f64, {n, l, h * e});
    lse = Tensor(DType::f64, {n, h, l});
  }

  // The buffers converted to T, with params pointing into them.
  template <class T>
  struct Typed {
    Tensor q, k, v, d_o, o, lse, d_q, d_k, d_v;
    AttentionParams<T> params;
  };
  template <class T>
  Typed<T> typed(double scale, bool causal) const {
    const DType dt = dtype_of<T>();
    Typed<T> out{q.to(dt), k.to(dt), v.to(dt), d_o.to(dt), o.to(dt), lse.to(dt), d_q.to(dt), d_k.to(dt), d_v.to(dt), {}};
    auto& p = out.params;
    p.batch = batch;
    p.seq_len = seq_len;
    p.heads = heads;
    p.head_dim = head_dim;
    p.scale = scale;
    p.causal = causal;
    p.q = out.q.template data<T>();
    p.k = out.k.template data<T>();
    p.v = out.v.template data<T>();
    p.o = out.o.template data<T>();
    p.lse = out.lse.template data<T>();
    p.d_o = out.d_o.template data<T>();
    p.d_q = out.d_q.template data<T>();
    p.d_k = out.d_k.template data<T>();
    p.d_v = out.d_v.template data<T>();
    return out;
  }

  // The reference problem of sequence n.
  ref::AttentionProblem problem(std::int64_t n, double scale, bool causal) const {
    return {matrix<double>(q, n), matrix<double>(k, n), matrix<double>(v, n), heads, scale, causal};
  }
};

// ||a - b||_F / ||b||_F over the columns of head h (all sequences).
inline double head_relative_error(const Tensor& a, const Tensor& b, std::int64_t h, std::int64_t e) {
  double diff = 0, norm = 0;
  const std::int64_t d = b.dim(2), rows = b.dim(0) * b.dim(1);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t m = h * e; m < (h + 1) * e; ++m) {
      const double x = a.at(r * d + m), y = b.at(r * d + m);
      diff += (x - y) * (x - y);
      norm += y * y;
    }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

}  // namespace lorafast::testing
