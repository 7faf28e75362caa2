// safetensors: round trips, F16/BF16 decoding, and one test per way a file can be
// corrupt; each corrupt file must fail with bad_input naming the tensor or offset.
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <limits>

#include "lorafast/safetensors.hpp"

namespace lorafast {
namespace {

namespace fs = std::filesystem;
const std::string origin = "case.safetensors";

std::vector<std::byte> with_length(std::uint64_t length, const std::string& header, std::size_t data_bytes) {
  std::vector<std::byte> file(8 + header.size() + data_bytes, std::byte{0x5a});
  for (int i = 0; i < 8; ++i) file[i] = static_cast<std::byte>((length >> (8 * i)) & 0xff);
  std::memcpy(file.data() + 8, header.data(), header.size());
  return file;
}

// A file with this JSON header (as written, plus trailing spaces) and `data_bytes` of data.
std::vector<std::byte> make_file(std::string header, std::size_t data_bytes) {
  header.append((8 - header.size() % 8) % 8, ' ');
  return with_length(header.size(), header, data_bytes);
}

std::size_t header_length(const std::string& header) { return (header.size() + 7) / 8 * 8; }

// The message of the bad_input error that parsing `file` must raise.
std::string parse_error(const std::vector<std::byte>& file) {
  try {
    parse_safetensors(file, origin);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::bad_input) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "a corrupt file was accepted";
  return {};
}

void expect_error(const std::vector<std::byte>& file, std::initializer_list<std::string> parts) {
  const std::string message = parse_error(file);
  EXPECT_EQ(message.rfind(origin + ": ", 0), 0u) << message;
  for (const auto& part : parts)
    EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
}

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return cat('"', name, "\": {\"dtype\": \"", dtype, "\", \"shape\": ", shape, ", \"data_offsets\": ", offsets,
             '}');
}

// "{e1, e2, ...}"; built with append, as operator+ on temporaries trips GCC 12's -Wrestrict.
std::string object_of(std::initializer_list<std::string> entries, const std::string& tail = "") {
  std::string out = "{";
  for (const auto& e : entries) out.append(out.size() > 1 ? ", " : "").append(e);
  return out.append(tail).append("}");
}

// A file holding one tensor 'x' and `data_bytes` of data.
std::vector<std::byte> x_file(const std::string& dtype, const std::string& shape, const std::string& offsets,
                              std::size_t data_bytes) {
  return make_file(object_of({entry("x", dtype, shape, offsets)}), data_bytes);
}

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / cat("lorafast-", name, '-', ::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

template <class T>
Tensor filled(Shape shape, T first, T step) {
  Tensor t(dtype_of<T>(), std::move(shape));
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<T>()[i] = first + step * static_cast<T>(i);
  return t;
}

void expect_same(const Tensor& got, const Tensor& want, const std::string& name) {
  EXPECT_EQ(got.dtype(), want.dtype()) << name;
  EXPECT_EQ(got.shape(), want.shape()) << name;
  ASSERT_EQ(got.nbytes(), want.nbytes()) << name;
  EXPECT_EQ(std::memcmp(got.bytes(), want.bytes(), got.nbytes()), 0) << name;
}

TEST(SafetensorsRoundTrip, F32F64ScalarEmptyAndMetadata) {
  TensorMap tensors;
  tensors["w.f32"] = filled<float>({2, 3}, -1.0f, 0.375f);
  tensors["b.f64"] = filled<double>({4}, 1e300, -7e299);
  tensors["b.f64"].data<double>()[3] = -0.0;
  tensors["scalar"] = filled<float>({}, 3.25f, 0.0f);
  tensors["empty"] = Tensor(DType::f64, {0, 3});
  const Metadata metadata = {{"format", "pt"}, {"note", "lorafast test \xc3\xa9"}};

  const fs::path dir = fresh_dir("roundtrip");
  const fs::path path = dir / "out.safetensors";
  write_safetensors(path, tensors, metadata);
  const auto back = read_safetensors(path);
  EXPECT_EQ(back.metadata, metadata);
  ASSERT_EQ(back.tensors.size(), tensors.size());
  for (const auto& [name, tensor] : tensors) {
    ASSERT_TRUE(back.tensors.contains(name)) << name;
    expect_same(back.tensors.at(name), tensor, name);
  }
  EXPECT_EQ(back.tensors.at("scalar").numel(), 1);
  EXPECT_EQ(back.tensors.at("empty").numel(), 0);
  fs::remove_all(dir);
}

TEST(SafetensorsRoundTrip, HeaderIsPaddedToEightBytesAndDataFollowsInNameOrder) {
  TensorMap tensors;
  tensors["b"] = filled<float>({1}, 2.0f, 0.0f);
  tensors["a"] = filled<double>({1}, 1.0, 0.0);
  const auto file = serialize_safetensors(tensors);
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(file[i]) << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(file.size(), 8 + n + 12);
  const std::string header(reinterpret_cast<const char*>(file.data() + 8), n);
  EXPECT_NE(header.find("\"a\":{\"data_offsets\":[0,8],\"dtype\":\"F64\",\"shape\":[1]}"), std::string::npos)
      << header;
  EXPECT_NE(header.find("\"b\":{\"data_offsets\":[8,12],\"dtype\":\"F32\",\"shape\":[1]}"), std::string::npos)
      << header;
  double a = 0;
  float b = 0;
  std::memcpy(&a, file.data() + 8 + n, 8);
  std::memcpy(&b, file.data() + 8 + n + 8, 4);
  EXPECT_EQ(a, 1.0);
  EXPECT_EQ(b, 2.0f);
}

TEST(SafetensorsParse, AcceptsHandWrittenFileWithDataOutOfNameOrder) {
  // "z" comes first in the data, "a" second; the header has extra padding spaces.
  const std::string header =
      object_of({entry("a", "F32", "[2]", "[4, 12]"), entry("z", "F32", "[]", "[0, 4]")},
                ", \"__metadata__\": {\"k\": \"v\"}")
          .append(8, ' ');
  auto file = make_file(header, 12);
  const float values[3] = {7.0f, -1.5f, 2.5f};
  std::memcpy(file.data() + 8 + header_length(header), values, sizeof values);
  const auto contents = parse_safetensors(file, origin);
  EXPECT_EQ(contents.metadata.at("k"), "v");
  EXPECT_EQ(contents.tensors.at("z").at(0), 7.0);
  EXPECT_EQ(contents.tensors.at("a").shape(), Shape({2}));
  EXPECT_EQ(contents.tensors.at("a").at(0), -1.5);
  EXPECT_EQ(contents.tensors.at("a").at(1), 2.5);
}

// Decodes 16-bit values of `dtype` through a real file.
Tensor decode16(const std::string& dtype, std::initializer_list<std::uint16_t> bits) {
  const std::string header =
      object_of({entry("h", dtype, cat('[', bits.size(), ']'), cat("[0, ", 2 * bits.size(), "]"))});
  auto file = make_file(header, 2 * bits.size());
  std::byte* data = file.data() + 8 + header_length(header);
  for (const auto b : bits) {
    *data++ = static_cast<std::byte>(b & 0xff);
    *data++ = static_cast<std::byte>(b >> 8);
  }
  return parse_safetensors(file, origin).tensors.at("h");
}

TEST(SafetensorsHalf, F16KnownBitPatterns) {
  const Tensor t =
      decode16("F16", {0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00, 0xfc00, 0x8000, 0x3555, 0x7e00});
  ASSERT_EQ(t.dtype(), DType::f32);
  const float* v = t.data<float>();
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], -2.0f);
  EXPECT_EQ(v[2], 65504.0f);
  EXPECT_EQ(v[3], std::ldexp(1.0f, -24));           // smallest subnormal
  EXPECT_EQ(v[4], std::ldexp(1023.0f, -24));        // largest subnormal
  EXPECT_EQ(v[5], std::ldexp(1.0f, -14));           // smallest normal
  EXPECT_EQ(v[6], std::numeric_limits<float>::infinity());
  EXPECT_EQ(v[7], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(std::bit_cast<std::uint32_t>(v[8]), 0x80000000u);  // -0
  EXPECT_EQ(v[9], 1365.0f / 4096.0f);               // 0x3555 = (1024 + 341) * 2^-12
  EXPECT_TRUE(std::isnan(v[10]));
}

TEST(SafetensorsHalf, BF16KnownBitPatterns) {
  const Tensor t = decode16("BF16", {0x3f80, 0xc000, 0x7f7f, 0x0001, 0x7f80, 0xff80, 0x4049, 0x7fc0});
  ASSERT_EQ(t.dtype(), DType::f32);
  const float* v = t.data<float>();
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], -2.0f);
  EXPECT_EQ(v[2], std::ldexp(255.0f, 120));          // largest finite: (2 - 2^-7) * 2^127
  EXPECT_EQ(v[3], std::ldexp(1.0f, -133));           // smallest subnormal
  EXPECT_EQ(v[4], std::numeric_limits<float>::infinity());
  EXPECT_EQ(v[5], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(v[6], 3.140625f);
  EXPECT_TRUE(std::isnan(v[7]));
}

TEST(SafetensorsCorrupt, FramingAndJson) {
  expect_error(std::vector<std::byte>(5), {"5 bytes is too short"});
  expect_error(with_length(max_safetensors_header + 1, "{}", 0), {"header length 100000001", "limit"});
  expect_error(with_length(64, "{}      ", 0), {"header length 64", "past the end"});
  expect_error(make_file("{\"x\": ", 0), {"not valid JSON"});
  expect_error(make_file("{\"\xff\": 1}", 0), {"not valid JSON"});
  expect_error(make_file("{} x", 0), {"not valid JSON"});
  expect_error(make_file("[1, 2]", 0), {"header is a JSON array, not an object"});
  expect_error(make_file(object_of({entry("a", "F32", "[1]", "[0, 4]"), entry("a", "F32", "[1]", "[4, 8]")}), 8),
               {"duplicate key 'a'"});
}

TEST(SafetensorsCorrupt, EntryFieldsAndDtype) {
  expect_error(make_file("{\"x\": 3}", 0), {"tensor 'x'", "not an object"});
  expect_error(make_file("{\"x\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4),
               {"tensor 'x'", "missing \"data_offsets\""});
  expect_error(make_file("{\"x\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4),
               {"tensor 'x'", "missing \"dtype\""});
  expect_error(make_file("{\"x\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4),
               {"tensor 'x'", "dtype is a number"});
  for (const char* dtype : {"I32", "U8", "BOOL", "F8_E4M3", "I64", "f32", ""})
    expect_error(x_file(dtype, "[1]", "[0, 4]", 4),
                 {"tensor 'x'", cat("unsupported dtype '", dtype, "'")});
}

TEST(SafetensorsCorrupt, Shapes) {
  expect_error(x_file("F32", "3", "[0, 12]", 12), {"tensor 'x'", "shape is a number"});
  expect_error(x_file("F32", "[2, -1]", "[0, 8]", 8), {"tensor 'x'", "shape[1] is -1"});
  expect_error(x_file("F32", "[2.5]", "[0, 8]", 8), {"tensor 'x'", "shape[0] is 2.5"});
  expect_error(x_file("F32", "[\"2\"]", "[0, 8]", 8), {"tensor 'x'", "shape[0] is a string"});
  expect_error(x_file("F32", "[4294967296, 4294967296]", "[0, 8]", 8),
               {"tensor 'x'", "more elements than fit in 64 bits"});
  expect_error(x_file("F64", "[4611686018427387904]", "[0, 8]", 8),
               {"tensor 'x'", "more bytes than fit in 64 bits"});
}

TEST(SafetensorsCorrupt, DataOffsets) {
  for (const char* offsets : {"[0]", "[0, 4, 8]", "4", "[\"0\", 4]", "[0, -4]", "[0.0, 4]"})
    expect_error(x_file("F32", "[1]", offsets, 4), {"tensor 'x'", "data_offsets"});
  expect_error(x_file("F32", "[1]", "[8, 4]", 8), {"tensor 'x'", "[8, 4] begin after end"});
  expect_error(x_file("F32", "[4]", "[0, 16]", 8),
               {"tensor 'x'", "data_offsets[1] is 16", "[0, 8]"});
  expect_error(x_file("F32", "[2, 3, 5]", "[0, 96]", 96),
               {"tensor 'x'", "data_offsets [0, 96] span 96 bytes but F32 [2, 3, 5] needs 120"});
}

TEST(SafetensorsCorrupt, TensorsMustTileTheDataSection) {
  expect_error(make_file(object_of({entry("a", "F32", "[2]", "[0, 8]"), entry("b", "F32", "[2]", "[4, 12]")}), 12),
               {"tensor 'b'", "[4, 12] overlap tensor 'a' [0, 8]"});
  expect_error(make_file(object_of({entry("a", "F32", "[1]", "[0, 4]"), entry("b", "F32", "[1]", "[0, 4]")}), 4),
               {"tensor 'b'", "overlap tensor 'a'"});
  const std::string gap = object_of({entry("a", "F32", "[1]", "[0, 4]"), entry("b", "F32", "[1]", "[8, 12]")});
  expect_error(make_file(gap, 12),
               {"data bytes [4, 8]", cat("file offset ", 8 + header_length(gap) + 4), "gap before tensor 'b'"});
  const std::string trailing = object_of({entry("a", "F32", "[1]", "[0, 4]")});
  expect_error(make_file(trailing, 8),
               {"data bytes [4, 8]", cat("file offset ", 8 + header_length(trailing) + 4), "trailing"});
  expect_error(make_file("{}", 1), {"data bytes [0, 1]", "trailing"});
}

TEST(SafetensorsCorrupt, Metadata) {
  expect_error(make_file("{\"__metadata__\": {\"ok\": \"v\", \"k\": 1}}", 0), {"__metadata__ 'k' is a number"});
  expect_error(make_file("{\"__metadata__\": [\"k\"]}", 0), {"__metadata__: entry is a list, not an object"});
}

TEST(SafetensorsRead, MissingFileNamesThePath) {
  const fs::path path = fs::temp_directory_path() / cat("lorafast-no-such-", ::getpid(), ".safetensors");
  try {
    read_safetensors(path);
    ADD_FAILURE() << "read a missing file";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::bad_input);
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
}

TEST(SafetensorsWrite, ReservedNameIsRejected) {
  TensorMap tensors;
  tensors["__metadata__"] = Tensor(DType::f32, {1});
  EXPECT_THROW(serialize_safetensors(tensors), Error);
}

}  // namespace
}  // namespace lorafast
