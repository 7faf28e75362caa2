// Tensor: an owning, contiguous, row-major array of f32, f64 or bf16 with a shape
// (bf16: storage of frozen weights only, bf16.hpp).
// MatrixView: a non-owning 2-D window (rows, cols, leading dimension) used by the
// kernels, e.g. one head's columns of a [L, D] matrix (ld = D).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "lorafast/bf16.hpp"
#include "lorafast/error.hpp"

namespace lorafast {

enum class DType { f32, f64, bf16 };

std::size_t dtype_size(DType dtype);
std::string dtype_name(DType dtype);  // safetensors spelling: "F32", "F64", "BF16"

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::f32; }
template <>
constexpr DType dtype_of<double>() { return DType::f64; }
template <>
constexpr DType dtype_of<BFloat16>() { return DType::bf16; }

using Shape = std::vector<std::int64_t>;

std::int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[2, 3]"

class Tensor {
 public:
  Tensor() = default;
  Tensor(DType dtype, Shape shape);  // zero-filled

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  std::int64_t dim(int axis) const { return shape_.at(static_cast<std::size_t>(axis)); }
  std::int64_t numel() const { return shape_numel(shape_); }
  std::size_t nbytes() const { return storage_.size(); }
  bool empty() const { return shape_.empty() && storage_.empty(); }

  std::byte* bytes() { return storage_.data(); }
  const std::byte* bytes() const { return storage_.data(); }

  template <class T>
  T* data() {
    LF_ASSERT(dtype_ == dtype_of<T>());
    return reinterpret_cast<T*>(storage_.data());
  }
  template <class T>
  const T* data() const {
    LF_ASSERT(dtype_ == dtype_of<T>());
    return reinterpret_cast<const T*>(storage_.data());
  }

  Tensor to(DType dtype) const;        // converted copy (a plain copy when equal; to bf16: rounded to nearest even)
  Tensor reshaped(Shape shape) const;  // same data, new shape of equal numel
  double at(std::int64_t flat_index) const;  // element as double, for tests and I/O
  bool all_finite() const;

 private:
  DType dtype_ = DType::f32;
  Shape shape_;
  std::vector<std::byte> storage_;
};

template <class T>
struct MatrixView {
  T* data = nullptr;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t ld = 0;  // elements between consecutive rows

  T& operator()(std::int64_t r, std::int64_t c) const { return data[r * ld + c]; }
  operator MatrixView<const T>() const
    requires(!std::is_const_v<T>)
  {
    return {data, rows, cols, ld};
  }
  T* row(std::int64_t r) const { return data + r * ld; }
  MatrixView block(std::int64_t r0, std::int64_t c0, std::int64_t nr, std::int64_t nc) const {
    return {data + r0 * ld + c0, nr, nc, ld};
  }
};

// The matrix of a 2-D tensor, or of slice `index` along the first axis of a 3-D one.
template <class T>
MatrixView<T> matrix(Tensor& tensor, std::int64_t index = 0);
template <class T>
MatrixView<const T> matrix(const Tensor& tensor, std::int64_t index = 0);

}  // namespace lorafast
