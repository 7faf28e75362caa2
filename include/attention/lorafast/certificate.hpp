// The error certificate of the polynomial method (SPEC.md §3.1): a sound score
// bound G per head in O(L * E), the exact supremum of the Taylor surrogate's
// relative error on [-G, G], the entry-wise error of the probabilities, and the
// smallest even degree that meets a gradient error target.
#pragma once

#include <cstdint>
#include <vector>

#include "lorafast/attention.hpp"
#include "lorafast/fast_attention.hpp"  // centred_keys, mean_key

namespace lorafast {

// sup over t in [-G, G] of |T_g(t) e^{-t} - 1| for any degree g >= 0 (T_g: the
// degree-g Taylor polynomial of exp), i.e. the entry-wise relative error of
// exp(S) ≈ T_g(S) when |S_ij| <= G. Rounded up, so it is an upper bound; +inf when it
// overflows. Even g is the surrogate itself; odd g = g' - 1 is its derivative T_g'.
double taylor_relative_error(double score_bound, int degree);

// SPEC's Lagrange bound G^{g+1} e^G / (g+1)!: sound, usually close to the exact
// supremum above (which it never undercuts); kept for reference and tests.
double lagrange_error_bound(double score_bound, int degree);

// Entry-wise relative error of P given entry-wise relative error eta of exp(S):
// 2 eta / (1 - eta); +inf when eta >= 1.
double probability_error_bound(double eta);

// The two surrogate gradients of SPEC §3.2 weigh the score gradient differently:
// chained uses dS = P~ ∘ (dP - delta), the degree-g weights themselves; fast is the
// exact gradient of the surrogate loss, so its dS carries d T_g / ds = T_{g-1}(s) / z~,
// whose relative error is eta_{g-1} (an odd degree, larger by about (g+1)/G).
enum class GradientRoute { fast, chained };

// Entry-wise relative error bound of every attention-weight matrix the route's gradient
// is built from: P~ (both routes) and, for fast, T_{g-1}(S) / z~, which is within
// (eta_{g-1} + eta_g) / (1 - eta_g) of P. The bound the dispatcher holds to --eps:
// on the adversarial and random inputs of test_dispatch_accuracy the relative
// Frobenius error of dQ, dK, dV stays below 0.45x this bound at every degree
// (measured), where a bound that ignores the derivative falls short by up to 19x.
double gradient_error_bound(double score_bound, int degree, GradientRoute route);

// Degrees above this are never chosen automatically: F = C(E+g, g) explodes first.
constexpr int max_certified_degree = 64;

// Smallest even g >= 2 with gradient_error_bound(G, g, route) <= eps; -1 when no
// g <= max_certified_degree does.
int degree_for(double score_bound, double eps, GradientRoute route);

// What the certificate needs to know about one head (maxed over the batch).
struct HeadScores {
  double gamma_q = 0.0;          // max |entry| of Q_h (LoRA included)
  double gamma_k = 0.0;          // max |entry| of K_h
  double score_bound = 0.0;      // G >= |beta q_i.(k_j - c)| for all i, j; c = mean_key
  double raw_score_bound = 0.0;  // beta max|q_i| max|k_j| >= |S_ij| (no centring)
};

// Query head h against its K/V head (params.q, params.k, scale, causal and the sizes);
// `chunk` is the causal surrogate's C (it places the centre). O(L * E).
template <class T>
HeadScores measure_head(const AttentionParams<T>& params, std::int64_t n, std::int64_t h, std::int64_t chunk);

// One entry per head, each the maximum over the batch. O(N * L * D).
template <class T>
std::vector<HeadScores> measure_heads(const AttentionParams<T>& params, std::int64_t chunk);

}  // namespace lorafast
