// Symmetric-monomial Taylor features (SPEC.md §3.1): for x in R^E,
//   phi(x) = [ x^a / sqrt(a!) ]  over multi-indices a in N^E with |a| <= g,
// so that <phi(q), phi(k)> = sum_{j<=g} (q.k)^j / j! = T_g(q.k), the degree-g Taylor
// polynomial of exp. F = C(E+g, g) features. Callers fold sqrt(beta) (and any q/k
// balancing) into x before mapping.
//
// Features are ordered by degree; feature 0 is the constant 1 and every other
// feature f is phi[parent(f)] * x[variable(f)] * factor(f), with variable(f) >= the
// variables of its parent, so each multiset is produced exactly once. The same tree
// drives the backward pass (reverse mode, O(F) per row).
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "lorafast/tensor.hpp"

namespace lorafast {

// C(E+g, g); throws Error(cannot_meet) when it exceeds `limit`.
std::int64_t taylor_feature_count(std::int64_t dim, int degree, std::int64_t limit = std::int64_t{1} << 40);

class TaylorFeatures {
 public:
  TaylorFeatures(std::int64_t dim, int degree);

  std::int64_t dim() const { return dim_; }
  int degree() const { return degree_; }
  std::int64_t size() const { return static_cast<std::int64_t>(parent_.size()); }

  // out[r, :] = phi(x[r, :]); x: [rows, E], out: [rows, F].
  template <class T>
  void map(std::type_identity_t<MatrixView<const T>> x, MatrixView<T> out) const;

  // d_x[r, m] += sum_f d_phi[r, f] * d phi_f(x_r) / d x_m, given phi = map(x).
  template <class T>
  void map_bwd(std::type_identity_t<MatrixView<const T>> x, std::type_identity_t<MatrixView<const T>> phi,
               std::type_identity_t<MatrixView<const T>> d_phi, MatrixView<T> d_x) const;

  // The same two maps in column layout, for a block of rows at once: row r of the
  // block is column r, so every inner loop runs over the rows (SIMD) instead of
  // gathering along the parent tree. x_t: [E, rows], out: [F, rows].
  template <class T>
  void map_columns(std::type_identity_t<MatrixView<const T>> x_t, MatrixView<T> out) const;

  // d_x_t[m, r] += sum_f d_phi[f, r] * d phi_f(x_r) / d x_m, given phi = map_columns(x_t).
  // d_phi ([F, rows]) is overwritten: it carries the reverse-mode adjoints.
  template <class T>
  void map_columns_bwd(std::type_identity_t<MatrixView<const T>> x_t, std::type_identity_t<MatrixView<const T>> phi,
                       MatrixView<T> d_phi, MatrixView<T> d_x_t) const;

 private:
  std::int64_t dim_;
  int degree_;
  std::vector<std::int32_t> parent_;    // [F]; -1 for the constant feature
  std::vector<std::int32_t> variable_;  // [F]
  std::vector<double> factor_;          // [F]: 1 / sqrt(a_m + 1) of the new factor
};

}  // namespace lorafast
