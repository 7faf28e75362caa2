// Raising a Taylor feature by one variable: for a feature f of degree <= g (multi-index
// a) and a variable m,
//   phi_f(x) x_m = x^(a + e_m) / sqrt(a!) = sqrt(a_m + 1) phi'_child(f, m)(x),
// with phi' the degree-(g+1) features, whose first F entries are the degree-g features
// (both are ordered by degree, features.hpp). This turns the chained method's
// Kronecker blocks Fk^T (V ⊗_row K') ([F, E^2]) into Fk'^T V ([F', E]), a third of the
// work at E = 8, g = 4 (F' = 1287 against F E = 3960).
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <vector>

namespace lorafast::chained {

struct FeatureRaise {
  std::vector<std::int32_t> child;  // [F, E]: index among the degree-(g+1) features
  std::vector<double> factor;       // [F, E]: sqrt(a_m + 1)
  // The degree-(g+1) features F + t, as TaylorFeatures builds them:
  // phi'_(F+t) = phi_top_parent[t] x_top_variable[t] top_scale[t].
  std::vector<std::int32_t> top_parent, top_variable;  // [F' - F]
  std::vector<double> top_scale;                       // [F' - F]: 1 / sqrt(a_m + 1)

  // Enumerates multi-indices in the order of TaylorFeatures' construction: level by
  // level, each parent extended by every variable >= its last one.
  FeatureRaise(std::int64_t dim, int degree) {
    std::vector<std::vector<int>> index{std::vector<int>(static_cast<std::size_t>(dim), 0)};
    std::vector<std::int64_t> last{0};
    std::int64_t begin = 0, end = 1, count = 1;
    for (int j = 1; j <= degree + 1; ++j) {
      for (std::int64_t f = begin; f < end; ++f)
        for (std::int64_t m = last[f]; m < dim; ++m) {
          index.push_back(index[f]);
          ++index.back()[m];
          last.push_back(m);
          if (j == degree + 1) {
            top_parent.push_back(static_cast<std::int32_t>(f));
            top_variable.push_back(static_cast<std::int32_t>(m));
            top_scale.push_back(1.0 / std::sqrt(static_cast<double>(index.back()[m])));
          }
        }
      count = end;
      begin = end;
      end = static_cast<std::int64_t>(index.size());
    }
    std::map<std::vector<int>, std::int32_t> position;
    for (std::size_t f = 0; f < index.size(); ++f) position[index[f]] = static_cast<std::int32_t>(f);
    for (std::int64_t f = 0; f < count; ++f)
      for (std::int64_t m = 0; m < dim; ++m) {
        std::vector<int> raised = index[f];
        factor.push_back(std::sqrt(static_cast<double>(++raised[m])));
        child.push_back(position.at(raised));
      }
  }
};

}  // namespace lorafast::chained
