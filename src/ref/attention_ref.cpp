#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ref/reference.hpp"

namespace lorafast::ref {
namespace {

using Dense = std::vector<double>;  // row-major L x L

// Whether query i sees key j: the masks of AttentionParams from their definitions.
bool visible(const AttentionProblem& pr, std::int64_t i, std::int64_t j) {
  const auto document = [&](std::int64_t pos) {
    return std::upper_bound(pr.cu_seqlens.begin(), pr.cu_seqlens.end(), pos) - pr.cu_seqlens.begin();
  };
  return (!pr.causal || j <= i) && (pr.window == 0 || i - j < pr.window) && document(i) == document(j);
}

// P = softmax(scale * Q_h K_h^T + mask) for head h.
Dense probabilities(const AttentionProblem& pr, std::int64_t h) {
  const std::int64_t l = pr.q.rows, e = pr.q.cols / pr.heads;
  Dense p(static_cast<std::size_t>(l * l));
  for (std::int64_t i = 0; i < l; ++i) {
    double row_max = -std::numeric_limits<double>::infinity();
    for (std::int64_t j = 0; j < l; ++j) {
      double s = -std::numeric_limits<double>::infinity();
      if (visible(pr, i, j)) {
        s = 0.0;
        for (std::int64_t c = h * e; c < (h + 1) * e; ++c) s += pr.q(i, c) * pr.k(j, c);
        s *= pr.scale;
      }
      p[i * l + j] = s;
      row_max = std::max(row_max, s);
    }
    double sum = 0.0;
    for (std::int64_t j = 0; j < l; ++j) sum += (p[i * l + j] = std::exp(p[i * l + j] - row_max));
    for (std::int64_t j = 0; j < l; ++j) p[i * l + j] /= sum;
  }
  return p;
}

}  // namespace

void attention_fwd(const AttentionProblem& pr, MatrixView<double> o) {
  const std::int64_t l = pr.q.rows, e = pr.q.cols / pr.heads;
  for (std::int64_t h = 0; h < pr.heads; ++h) {
    const Dense p = probabilities(pr, h);
    for (std::int64_t i = 0; i < l; ++i)
      for (std::int64_t c = h * e; c < (h + 1) * e; ++c) {
        double acc = 0.0;
        for (std::int64_t j = 0; j < l; ++j) acc += p[i * l + j] * pr.v(j, c);
        o(i, c) = acc;
      }
  }
}

void attention_bwd(const AttentionProblem& pr, MatrixView<const double> d_o, MatrixView<double> d_q,
                   MatrixView<double> d_k, MatrixView<double> d_v) {
  const std::int64_t l = pr.q.rows, e = pr.q.cols / pr.heads;
  for (std::int64_t h = 0; h < pr.heads; ++h) {
    const std::int64_t c0 = h * e, c1 = (h + 1) * e;
    const Dense p = probabilities(pr, h);
    Dense d_s(p.size());
    for (std::int64_t i = 0; i < l; ++i) {
      // dP_ij = <dO_i, V_j>;  dS_ij = P_ij (dP_ij - sum_m P_im dP_im)
      Dense d_p(static_cast<std::size_t>(l));
      double weighted = 0.0;
      for (std::int64_t j = 0; j < l; ++j) {
        double acc = 0.0;
        for (std::int64_t c = c0; c < c1; ++c) acc += d_o(i, c) * pr.v(j, c);
        d_p[j] = acc;
        weighted += p[i * l + j] * acc;
      }
      for (std::int64_t j = 0; j < l; ++j) d_s[i * l + j] = p[i * l + j] * (d_p[j] - weighted);
    }
    for (std::int64_t i = 0; i < l; ++i)
      for (std::int64_t c = c0; c < c1; ++c) {
        double dq = 0.0, dk = 0.0, dv = 0.0;
        for (std::int64_t j = 0; j < l; ++j) {
          dq += d_s[i * l + j] * pr.k(j, c);  // dQ = scale dS K
          dk += d_s[j * l + i] * pr.q(j, c);  // dK = scale dS^T Q
          dv += p[j * l + i] * d_o(j, c);     // dV = P^T dO
        }
        d_q(i, c) = pr.scale * dq;
        d_k(i, c) = pr.scale * dk;
        d_v(i, c) = dv;
      }
  }
}

}  // namespace lorafast::ref
