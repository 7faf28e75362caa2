// GGUF writer (gguf.hpp), byte for byte the layout of gguf-py's GGUFWriter: magic,
// version 3, tensor and key counts, the key-value pairs, the tensor infos (name,
// dims innermost first, type, offset in the data section), zero padding to 32
// bytes, then each tensor's data padded to 32 bytes.
#include "lorafast/gguf.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "io/half_float.hpp"
#include "lorafast/bf16.hpp"

namespace lorafast {
namespace {

constexpr std::uint64_t alignment = 32;  // GGUF_DEFAULT_ALIGNMENT
constexpr std::int64_t q8_block = 32;

enum class ValueType : std::uint32_t { u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9 };

class Bytes {
 public:
  template <class T>
  void put(T value) {
    const std::size_t at = out.size();
    out.resize(at + sizeof(T));
    std::memcpy(out.data() + at, &value, sizeof(T));
  }
  void put(const std::string& s) {
    put<std::uint64_t>(s.size());
    const std::size_t at = out.size();
    out.resize(at + s.size());
    if (!s.empty()) std::memcpy(out.data() + at, s.data(), s.size());
  }
  void type(ValueType t) { put(static_cast<std::uint32_t>(t)); }
  std::vector<std::byte> out;
};

template <class T>
constexpr ValueType value_type() {
  if constexpr (std::is_same_v<T, std::uint32_t>) return ValueType::u32;
  else if constexpr (std::is_same_v<T, std::int32_t>) return ValueType::i32;
  else if constexpr (std::is_same_v<T, float>) return ValueType::f32;
  else if constexpr (std::is_same_v<T, bool>) return ValueType::boolean;
  else return ValueType::string;
}

void put_value(Bytes& b, const GgufValue& value) {
  std::visit(
      [&](const auto& v) {
        using V = std::decay_t<decltype(v)>;
        if constexpr (requires { typename V::value_type; } && !std::is_same_v<V, std::string>) {
          using E = typename V::value_type;
          b.type(ValueType::array);
          b.type(value_type<E>());
          b.put<std::uint64_t>(v.size());
          for (const auto& e : v) {
            if constexpr (std::is_same_v<E, std::string>) b.put(e);
            else b.put<E>(e);
          }
        } else {
          b.type(value_type<V>());
          if constexpr (std::is_same_v<V, std::string>) b.put(v);
          else if constexpr (std::is_same_v<V, bool>) b.put<std::uint8_t>(v ? 1 : 0);
          else b.put<V>(v);
        }
      },
      value);
}

std::uint64_t padded(std::uint64_t n) { return (n + alignment - 1) / alignment * alignment; }

// IEEE binary16 rounded to nearest even (the scale of a q8_0 block, f16 tensors).
std::uint16_t f32_to_f16(float x) { return std::bit_cast<std::uint16_t>(static_cast<_Float16>(x)); }

}  // namespace

GgmlType parse_ggml_type(const std::string& text) {
  for (GgmlType t : {GgmlType::f32, GgmlType::f16, GgmlType::bf16, GgmlType::q8_0})
    if (text == ggml_type_name(t)) return t;
  throw Error(ErrorKind::usage, cat("--type ", quote(text), " is not one of f32, f16, bf16, q8_0"));
}

std::string ggml_type_name(GgmlType type) {
  switch (type) {
    case GgmlType::f32: return "f32";
    case GgmlType::f16: return "f16";
    case GgmlType::bf16: return "bf16";
    case GgmlType::q8_0: return "q8_0";
  }
  return "?";
}

std::uint64_t ggml_nbytes(const GgufTensor& t) {
  const auto n = static_cast<std::uint64_t>(shape_numel(t.shape));
  switch (t.type) {
    case GgmlType::f32: return 4 * n;
    case GgmlType::f16:
    case GgmlType::bf16: return 2 * n;
    case GgmlType::q8_0:
      LF_CHECK(!t.shape.empty() && t.shape.back() % q8_block == 0, ErrorKind::cannot_meet, "tensor ", quote(t.name),
               ' ', shape_str(t.shape), ": q8_0 needs rows of a multiple of 32 values");
      return n / q8_block * (2 + q8_block);
  }
  return 0;
}

std::vector<std::byte> ggml_encode(std::span<const float> x, GgmlType type) {
  const auto n = static_cast<std::int64_t>(x.size());
  std::vector<std::byte> out;
  switch (type) {
    case GgmlType::f32:
      out.resize(4 * x.size());
      if (!x.empty()) std::memcpy(out.data(), x.data(), out.size());
      break;
    case GgmlType::f16:
    case GgmlType::bf16: {
      out.resize(2 * x.size());
      auto* dst = reinterpret_cast<std::uint16_t*>(out.data());
      const bool f16 = type == GgmlType::f16;
#pragma omp parallel for schedule(static)
      for (std::int64_t i = 0; i < n; ++i) dst[i] = f16 ? f32_to_f16(x[i]) : to_bf16(x[i]).bits;
      break;
    }
    case GgmlType::q8_0: {
      LF_ASSERT(n % q8_block == 0);
      constexpr std::int64_t block_bytes = 2 + q8_block;
      out.resize(static_cast<std::size_t>(n / q8_block * block_bytes));
#pragma omp parallel for schedule(static)
      for (std::int64_t b = 0; b < n / q8_block; ++b) {
        const float* v = x.data() + b * q8_block;
        std::byte* o = out.data() + b * block_bytes;
        float amax = 0;
        for (std::int64_t i = 0; i < q8_block; ++i) amax = std::max(amax, std::fabs(v[i]));
        const float d = amax / 127, id = d != 0 ? 1 / d : 0;
        const std::uint16_t scale = f32_to_f16(d);
        std::memcpy(o, &scale, 2);
        for (std::int64_t i = 0; i < q8_block; ++i)
          o[2 + i] = static_cast<std::byte>(static_cast<std::int8_t>(std::round(v[i] * id)));
      }
      break;
    }
  }
  return out;
}

GgufWriter::GgufWriter(const std::filesystem::path& path, const GgufMetadata& metadata, std::vector<GgufTensor> tensors)
    : tensors_(std::move(tensors)), file_(path) {
  Bytes b;
  b.put<std::uint32_t>(0x46554747);  // "GGUF"
  b.put<std::uint32_t>(3);
  b.put<std::uint64_t>(tensors_.size());
  b.put<std::uint64_t>(metadata.size());
  for (const auto& [key, value] : metadata) {
    b.put(key);
    put_value(b, value);
  }
  std::uint64_t offset = 0;
  for (const auto& t : tensors_) {
    b.put(t.name);
    b.put<std::uint32_t>(static_cast<std::uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) b.put<std::uint64_t>(static_cast<std::uint64_t>(*it));
    b.put(static_cast<std::uint32_t>(t.type));
    b.put<std::uint64_t>(offset);
    offset += padded(ggml_nbytes(t));
  }
  b.out.resize(padded(b.out.size()));
  file_.write(b.out);
}

void GgufWriter::write(std::span<const std::byte> bytes) {
  LF_ASSERT(next_ < tensors_.size() && bytes.size() == ggml_nbytes(tensors_[next_]));
  file_.write(bytes);
  const std::vector<std::byte> zeros(padded(bytes.size()) - bytes.size());
  file_.write(zeros);
  ++next_;
}

void GgufWriter::commit() {
  LF_ASSERT(next_ == tensors_.size());
  file_.commit();
}

}  // namespace lorafast
