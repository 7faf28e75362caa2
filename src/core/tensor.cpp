#include "lorafast/tensor.hpp"

#include <cmath>
#include <cstring>
#include <sstream>
#include <type_traits>

namespace lorafast {

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
  }
  LF_ASSERT(false);
  return 0;
}

std::string dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
  }
  LF_ASSERT(false);
  return {};
}

std::int64_t shape_numel(const Shape& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string shape_str(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  for (auto d : shape_) LF_ASSERT(d >= 0);
  storage_.resize(static_cast<std::size_t>(shape_numel(shape_)) * dtype_size(dtype_));
}

namespace {

double value(double x) { return x; }
double value(float x) { return x; }
double value(BFloat16 x) { return to_f32(x); }

// Calls f with a value of the element type of `dtype`.
template <class F>
void visit(DType dtype, F f) {
  switch (dtype) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::bf16: return f(BFloat16{});
  }
}

// Through double (exact for f32 and bf16 inputs); a double narrowed to bf16 is
// rounded to f32 first, so it can round twice.
template <class From, class To>
void convert(const From* in, To* out, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<To, BFloat16>)
      out[i] = to_bf16(static_cast<float>(value(in[i])));
    else
      out[i] = static_cast<To>(value(in[i]));
  }
}

}  // namespace

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  Tensor out(dtype, shape_);
  visit(dtype_, [&](auto from) {
    visit(dtype, [&](auto to) {
      using From = decltype(from);
      using To = decltype(to);
      convert(data<From>(), out.data<To>(), numel());
    });
  });
  return out;
}

Tensor Tensor::reshaped(Shape shape) const {
  LF_ASSERT(shape_numel(shape) == numel());
  Tensor out = *this;
  out.shape_ = std::move(shape);
  return out;
}

double Tensor::at(std::int64_t i) const {
  LF_ASSERT(i >= 0 && i < numel());
  double v = 0;
  visit(dtype_, [&](auto type) { v = value(data<decltype(type)>()[i]); });
  return v;
}

bool Tensor::all_finite() const {
  bool finite = true;
  visit(dtype_, [&](auto type) {
    const auto* v = data<decltype(type)>();
    for (std::int64_t i = 0, n = numel(); i < n; ++i) finite = finite && std::isfinite(value(v[i]));
  });
  return finite;
}

template <class T>
MatrixView<T> matrix(Tensor& tensor, std::int64_t index) {
  LF_ASSERT(tensor.rank() == 2 || tensor.rank() == 3);
  const int r = tensor.rank();
  const std::int64_t rows = tensor.dim(r - 2), cols = tensor.dim(r - 1);
  LF_ASSERT(index >= 0 && index < (r == 3 ? tensor.dim(0) : 1));
  return {tensor.data<T>() + index * rows * cols, rows, cols, cols};
}

template <class T>
MatrixView<const T> matrix(const Tensor& tensor, std::int64_t index) {
  auto view = matrix<T>(const_cast<Tensor&>(tensor), index);
  return {view.data, view.rows, view.cols, view.ld};
}

template MatrixView<float> matrix<float>(Tensor&, std::int64_t);
template MatrixView<double> matrix<double>(Tensor&, std::int64_t);
template MatrixView<const float> matrix<float>(const Tensor&, std::int64_t);
template MatrixView<const double> matrix<double>(const Tensor&, std::int64_t);

}  // namespace lorafast
