#include <cmath>
#include <vector>

#include "lorafast/certificate.hpp"
#include "ref/reference.hpp"

namespace lorafast::ref {
namespace {

using Dense = std::vector<double>;  // row-major L x L

double taylor(double t, int degree) {  // T_g(t)
  double term = 1, sum = 1;
  for (int j = 1; j <= degree; ++j) sum += (term *= t / j);
  return sum;
}

struct Surrogate {
  Dense w, d_w_d_s, p;  // weights, their derivative in s, and P~ = w / rowsum(w)
  std::vector<double> centre;
};

Surrogate build(const AttentionProblem& pr, const SurrogateConfig& cfg, std::int64_t h) {
  const std::int64_t l = pr.q.rows, e = pr.q.cols / pr.heads, c0 = h * e;
  Surrogate out;
  out.centre.assign(static_cast<std::size_t>(e), 0.0);
  const std::int64_t w = centred_keys(l, pr.causal, cfg.chunk);
  if (cfg.center_keys)
    for (std::int64_t j = 0; j < w; ++j)
      for (std::int64_t m = 0; m < e; ++m) out.centre[m] += pr.k(j, c0 + m) / static_cast<double>(w);
  out.w.assign(static_cast<std::size_t>(l * l), 0.0);
  out.d_w_d_s = out.w;
  out.p = out.w;
  for (std::int64_t i = 0; i < l; ++i) {
    double z = 0;
    for (std::int64_t j = 0; j < l; ++j) {
      if (pr.causal && j > i) continue;
      double s = 0;
      for (std::int64_t m = 0; m < e; ++m) s += pr.q(i, c0 + m) * (pr.k(j, c0 + m) - out.centre[m]);
      s *= pr.scale;
      const bool exact = pr.causal && j / cfg.chunk == i / cfg.chunk;
      out.w[i * l + j] = exact ? std::exp(s) : taylor(s, cfg.degree);
      // T_g' = T_{g-1}, and T_0' = 0.
      out.d_w_d_s[i * l + j] = exact ? std::exp(s) : cfg.degree == 0 ? 0.0 : taylor(s, cfg.degree - 1);
      z += out.w[i * l + j];
    }
    for (std::int64_t j = 0; j < l; ++j) out.p[i * l + j] = out.w[i * l + j] / z;
  }
  return out;
}

// dQ = scale dS (K - c) and dK = scale dS^T Q from the score gradient dS; dV = P~^T dO.
void scores_to_inputs(const AttentionProblem& pr, std::int64_t h, const Surrogate& sg, const Dense& d_s,
                      MatrixView<const double> d_o, MatrixView<double> d_q, MatrixView<double> d_k,
                      MatrixView<double> d_v) {
  const std::int64_t l = pr.q.rows, e = pr.q.cols / pr.heads, c0 = h * e;
  for (std::int64_t i = 0; i < l; ++i)
    for (std::int64_t m = 0; m < e; ++m) {
      double dq = 0, dk = 0, dv = 0;
      for (std::int64_t j = 0; j < l; ++j) {
        dq += d_s[i * l + j] * (pr.k(j, c0 + m) - sg.centre[m]);
        dk += d_s[j * l + i] * pr.q(j, c0 + m);
        dv += sg.p[j * l + i] * d_o(j, c0 + m);
      }
      d_q(i, c0 + m) = pr.scale * dq;
      d_k(i, c0 + m) = pr.scale * dk;
      d_v(i, c0 + m) = dv;
    }
}

// dP_ij = <dO_i, V_j>, delta_i = sum_j P~_ij dP_ij.
void output_grads(const AttentionProblem& pr, std::int64_t h, const Surrogate& sg, MatrixView<const double> d_o,
                  Dense& d_p, std::vector<double>& delta) {
  const std::int64_t l = pr.q.rows, e = pr.q.cols / pr.heads, c0 = h * e;
  d_p.assign(static_cast<std::size_t>(l * l), 0.0);
  delta.assign(static_cast<std::size_t>(l), 0.0);
  for (std::int64_t i = 0; i < l; ++i)
    for (std::int64_t j = 0; j < l; ++j) {
      double acc = 0;
      for (std::int64_t m = 0; m < e; ++m) acc += d_o(i, c0 + m) * pr.v(j, c0 + m);
      d_p[i * l + j] = acc;
      delta[i] += sg.p[i * l + j] * acc;
    }
}

}  // namespace

void surrogate_fwd(const AttentionProblem& pr, const SurrogateConfig& cfg, MatrixView<double> o) {
  const std::int64_t l = pr.q.rows, e = pr.q.cols / pr.heads;
  for (std::int64_t h = 0; h < pr.heads; ++h) {
    const Surrogate sg = build(pr, cfg, h);
    for (std::int64_t i = 0; i < l; ++i)
      for (std::int64_t m = h * e; m < (h + 1) * e; ++m) {
        double acc = 0;
        for (std::int64_t j = 0; j < l; ++j) acc += sg.p[i * l + j] * pr.v(j, m);
        o(i, m) = acc;
      }
  }
}

void surrogate_bwd(const AttentionProblem& pr, const SurrogateConfig& cfg, MatrixView<const double> d_o,
                   MatrixView<double> d_q, MatrixView<double> d_k, MatrixView<double> d_v) {
  const std::int64_t l = pr.q.rows;
  for (std::int64_t h = 0; h < pr.heads; ++h) {
    const Surrogate sg = build(pr, cfg, h);
    Dense d_p, d_s(static_cast<std::size_t>(l * l));
    std::vector<double> delta;
    output_grads(pr, h, sg, d_o, d_p, delta);
    // P~ = w / z: dw_ij = (dP_ij - delta_i) / z_i = P~_ij (dP_ij - delta_i) / w_ij; ds = dw * dw/ds.
    for (std::int64_t i = 0; i < l; ++i) {
      double z = 0;
      for (std::int64_t j = 0; j < l; ++j) z += sg.w[i * l + j];
      for (std::int64_t j = 0; j < l; ++j) d_s[i * l + j] = (d_p[i * l + j] - delta[i]) / z * sg.d_w_d_s[i * l + j];
      if (pr.causal)
        for (std::int64_t j = i + 1; j < l; ++j) d_s[i * l + j] = 0;
    }
    scores_to_inputs(pr, h, sg, d_s, d_o, d_q, d_k, d_v);
    // The surrogate also depends on the first w keys through their mean, the centre c.
    const std::int64_t e = pr.q.cols / pr.heads, c0 = h * e, w = centred_keys(l, pr.causal, cfg.chunk);
    for (std::int64_t m = 0; m < e && cfg.center_keys; ++m) {
      double mean = 0;
      for (std::int64_t j = 0; j < l; ++j) mean += d_k(j, c0 + m) / static_cast<double>(w);
      for (std::int64_t j = 0; j < w; ++j) d_k(j, c0 + m) -= mean;
    }
  }
}

void chained_bwd(const AttentionProblem& pr, const SurrogateConfig& cfg, MatrixView<const double> d_o,
                 MatrixView<double> d_q, MatrixView<double> d_k, MatrixView<double> d_v) {
  const std::int64_t l = pr.q.rows;
  for (std::int64_t h = 0; h < pr.heads; ++h) {
    const Surrogate sg = build(pr, cfg, h);
    Dense d_p, d_s(static_cast<std::size_t>(l * l));
    std::vector<double> delta;
    output_grads(pr, h, sg, d_o, d_p, delta);
    for (std::int64_t i = 0; i < l; ++i)
      for (std::int64_t j = 0; j < l; ++j) d_s[i * l + j] = sg.p[i * l + j] * (d_p[i * l + j] - delta[i]);
    scores_to_inputs(pr, h, sg, d_s, d_o, d_q, d_k, d_v);
  }
}

}  // namespace lorafast::ref
