#include "lorafast/features.hpp"

#include <cmath>
#include <vector>

#include "lorafast/error.hpp"

namespace lorafast {

std::int64_t taylor_feature_count(std::int64_t dim, int degree, std::int64_t limit) {
  LF_ASSERT(dim >= 1 && degree >= 0);
  // C(E+g, g) = prod_{j=1..g} (E + j) / j, exact at every step; stop once past the limit.
  long double count = 1;
  for (int j = 1; j <= degree; ++j) {
    count = count * static_cast<long double>(dim + j) / j;
    LF_CHECK(count <= static_cast<long double>(limit), ErrorKind::cannot_meet, "degree ", degree,
             " needs C(", dim + degree, ", ", degree, ") features for head width ", dim, ", more than ", limit);
  }
  return static_cast<std::int64_t>(std::llround(count));
}

TaylorFeatures::TaylorFeatures(std::int64_t dim, int degree) : dim_(dim), degree_(degree) {
  const std::int64_t count = taylor_feature_count(dim, degree, std::int64_t{1} << 31);
  parent_.reserve(count);
  variable_.reserve(count);
  factor_.reserve(count);
  std::vector<std::int32_t> run;  // exponent of the feature's last variable
  parent_.push_back(-1);
  variable_.push_back(0);
  factor_.push_back(1.0);
  run.push_back(0);
  std::int64_t level_begin = 0, level_end = 1;  // features of the previous degree
  for (int j = 1; j <= degree; ++j) {
    for (std::int64_t f = level_begin; f < level_end; ++f) {
      const std::int32_t last = j == 1 ? 0 : variable_[f];
      for (std::int32_t m = last; m < dim; ++m) {
        // x^(a + e_m) / sqrt((a + e_m)!) = x^a / sqrt(a!) * x_m / sqrt(a_m + 1)
        const std::int32_t exponent = (j > 1 && m == last ? run[f] : 0) + 1;
        parent_.push_back(static_cast<std::int32_t>(f));
        variable_.push_back(m);
        factor_.push_back(1.0 / std::sqrt(static_cast<double>(exponent)));
        run.push_back(exponent);
      }
    }
    level_begin = level_end;
    level_end = static_cast<std::int64_t>(parent_.size());
  }
  LF_ASSERT(static_cast<std::int64_t>(parent_.size()) == count);
}

template <class T>
void TaylorFeatures::map(std::type_identity_t<MatrixView<const T>> x, MatrixView<T> out) const {
  LF_ASSERT(x.cols == dim_ && out.cols == size() && out.rows == x.rows);
  const std::int64_t features = size();
  for (std::int64_t r = 0; r < x.rows; ++r) {
    const T* xr = x.row(r);
    T* o = out.row(r);
    o[0] = T(1);
    for (std::int64_t f = 1; f < features; ++f) o[f] = o[parent_[f]] * xr[variable_[f]] * static_cast<T>(factor_[f]);
  }
}

template <class T>
void TaylorFeatures::map_bwd(std::type_identity_t<MatrixView<const T>> x,
                             std::type_identity_t<MatrixView<const T>> phi,
                             std::type_identity_t<MatrixView<const T>> d_phi, MatrixView<T> d_x) const {
  LF_ASSERT(x.cols == dim_ && phi.cols == size() && d_phi.cols == size() && d_x.cols == dim_);
  const std::int64_t features = size();
  std::vector<T> g(static_cast<std::size_t>(features));
  for (std::int64_t r = 0; r < x.rows; ++r) {
    const T* xr = x.row(r);
    const T* pr = phi.row(r);
    T* dx = d_x.row(r);
    std::copy(d_phi.row(r), d_phi.row(r) + features, g.begin());
    // Reverse mode through phi_f = phi_parent * x_m * factor, children before parents.
    for (std::int64_t f = features - 1; f >= 1; --f) {
      const auto m = variable_[f], parent = parent_[f];
      const T weighted = g[f] * static_cast<T>(factor_[f]);
      g[parent] += weighted * xr[m];
      dx[m] += weighted * pr[parent];
    }
  }
}

template <class T>
void TaylorFeatures::map_columns(std::type_identity_t<MatrixView<const T>> x_t, MatrixView<T> out) const {
  LF_ASSERT(x_t.rows == dim_ && out.rows == size() && out.cols == x_t.cols);
  const std::int64_t rows = x_t.cols, features = size();
  T* __restrict one = out.row(0);
#pragma omp simd
  for (std::int64_t r = 0; r < rows; ++r) one[r] = T(1);
  for (std::int64_t f = 1; f < features; ++f) {
    const T* __restrict parent = out.row(parent_[f]);
    const T* __restrict x = x_t.row(variable_[f]);
    T* __restrict o = out.row(f);
    const auto factor = static_cast<T>(factor_[f]);
#pragma omp simd
    for (std::int64_t r = 0; r < rows; ++r) o[r] = parent[r] * (x[r] * factor);
  }
}

template <class T>
void TaylorFeatures::map_columns_bwd(std::type_identity_t<MatrixView<const T>> x_t,
                                     std::type_identity_t<MatrixView<const T>> phi, MatrixView<T> d_phi,
                                     MatrixView<T> d_x_t) const {
  LF_ASSERT(x_t.rows == dim_ && phi.rows == size() && d_phi.rows == size() && d_x_t.rows == dim_);
  LF_ASSERT(phi.cols == x_t.cols && d_phi.cols == x_t.cols && d_x_t.cols == x_t.cols);
  const std::int64_t rows = x_t.cols;
  // Reverse mode through phi_f = phi_parent * x_m * factor, children before parents.
  for (std::int64_t f = size() - 1; f >= 1; --f) {
    const T* __restrict g = d_phi.row(f);
    T* __restrict g_parent = d_phi.row(parent_[f]);
    const T* __restrict x = x_t.row(variable_[f]);
    const T* __restrict p = phi.row(parent_[f]);
    T* __restrict dx = d_x_t.row(variable_[f]);
    const auto factor = static_cast<T>(factor_[f]);
#pragma omp simd
    for (std::int64_t r = 0; r < rows; ++r) {
      const T weighted = g[r] * factor;
      g_parent[r] += weighted * x[r];
      dx[r] += weighted * p[r];
    }
  }
}

template void TaylorFeatures::map<float>(MatrixView<const float>, MatrixView<float>) const;
template void TaylorFeatures::map<double>(MatrixView<const double>, MatrixView<double>) const;
template void TaylorFeatures::map_bwd<float>(MatrixView<const float>, MatrixView<const float>,
                                             MatrixView<const float>, MatrixView<float>) const;
template void TaylorFeatures::map_bwd<double>(MatrixView<const double>, MatrixView<const double>,
                                              MatrixView<const double>, MatrixView<double>) const;
template void TaylorFeatures::map_columns<float>(MatrixView<const float>, MatrixView<float>) const;
template void TaylorFeatures::map_columns<double>(MatrixView<const double>, MatrixView<double>) const;
template void TaylorFeatures::map_columns_bwd<float>(MatrixView<const float>, MatrixView<const float>,
                                                     MatrixView<float>, MatrixView<float>) const;
template void TaylorFeatures::map_columns_bwd<double>(MatrixView<const double>, MatrixView<const double>,
                                                      MatrixView<double>, MatrixView<double>) const;

}  // namespace lorafast
