// safetensors one tensor at a time (SafetensorsReader, SafetensorsWriter) and
// directories built atomically (AtomicDirectory): the streaming reader checks a
// file exactly as read_safetensors does and loads the same tensors; the writer's
// file is byte for byte serialize_safetensors' when given the same order; a
// directory appears whole or not at all.
#include <gtest/gtest.h>

#include <fstream>

#include "lorafast/atomic_file.hpp"
#include "lorafast/safetensors_stream.hpp"
#include "support/bad_input.hpp"
#include "support/scratch_files.hpp"

namespace lorafast {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) { return testing::fresh_dir("stream", name); }

using testing::slurp;

TensorMap sample() {
  TensorMap t;
  t["a.weight"] = Tensor(DType::f32, {2, 3});
  t["b"] = Tensor(DType::f64, {5});
  t["empty"] = Tensor(DType::f32, {0, 4});
  for (auto& [name, x] : t)
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      if (x.dtype() == DType::f32) x.data<float>()[i] = 0.5f * static_cast<float>(i) - 1;
      else x.data<double>()[i] = 1.0 / static_cast<double>(i + 3);
    }
  return t;
}

TEST(SafetensorsStream, WriterMatchesSerializeAndReaderMatchesParse) {
  const fs::path dir = fresh_dir("roundtrip");
  const TensorMap tensors = sample();
  const Metadata metadata{{"format", "pt"}};
  std::vector<SafetensorsEntry> entries;
  for (const auto& [name, t] : tensors) entries.push_back({name, dtype_name(t.dtype()), t.shape()});
  SafetensorsWriter writer(dir / "s.safetensors", entries, metadata);
  for (const auto& [name, t] : tensors) writer.write(std::span(t.bytes(), t.nbytes()));
  EXPECT_FALSE(fs::exists(dir / "s.safetensors"));  // not before commit
  writer.commit();
  const auto whole = serialize_safetensors(tensors, metadata);
  EXPECT_EQ(slurp(dir / "s.safetensors"), std::string(reinterpret_cast<const char*>(whole.data()), whole.size()));

  const SafetensorsReader reader(dir / "s.safetensors");
  EXPECT_EQ(reader.metadata(), metadata);
  ASSERT_EQ(reader.entries().size(), tensors.size());
  for (const auto& e : reader.entries()) {
    const Tensor got = reader.read(e);
    const Tensor& want = tensors.at(e.name);
    EXPECT_EQ(got.shape(), want.shape()) << e.name;
    EXPECT_EQ(std::vector<std::byte>(got.bytes(), got.bytes() + got.nbytes()),
              std::vector<std::byte>(want.bytes(), want.bytes() + want.nbytes()))
        << e.name;
    EXPECT_EQ(reader.read_bytes(e).size(), want.nbytes());
  }
  fs::remove_all(dir);
}

TEST(SafetensorsStream, ReaderRefusesWhatReadSafetensorsRefuses) {
  const fs::path dir = fresh_dir("hostile");
  const auto bytes = serialize_safetensors(sample());
  const std::string whole(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  const auto check = [&](const std::string& content, const char* words) {
    std::ofstream(dir / "x.safetensors", std::ios::binary) << content;
    const std::string streamed = testing::bad_input_message([&] { SafetensorsReader r(dir / "x.safetensors"); });
    const std::string whole_read = testing::bad_input_message([&] { read_safetensors(dir / "x.safetensors"); });
    EXPECT_EQ(streamed, whole_read);
    EXPECT_MENTIONS(streamed, words);
  };
  check(whole.substr(0, 4), "too short");
  check(whole.substr(0, whole.size() - 3), "data_offsets");      // truncated data
  check(whole + "xyz", "trailing bytes");
  check(std::string("\xff\xff\xff\xff\xff\xff\xff\x0f", 8) + "{}", "header length");
  EXPECT_MENTIONS(testing::bad_input_message([&] { SafetensorsReader r(dir / "missing.safetensors"); }), "no such file");
  fs::remove_all(dir);
}

TEST(AtomicDirectory, AppearsWholeOrNotAtAll) {
  const fs::path dir = fresh_dir("dir");
  const fs::path out = dir / "out";
  {
    AtomicDirectory d(out, false);
    write_file_atomically(d.path() / "a", std::string_view("1"));
    EXPECT_FALSE(fs::exists(out));
  }  // not committed: nothing left
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 0);
  {
    AtomicDirectory d(out, false);
    write_file_atomically(d.path() / "a", std::string_view("1"));
    d.commit();
  }
  EXPECT_EQ(slurp(out / "a"), "1");
  try {
    AtomicDirectory d(out, false);
    ADD_FAILURE() << "an existing directory was not refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::usage);
    EXPECT_MENTIONS(std::string(e.what()), "already exists");
  }
  {
    AtomicDirectory d(out, true);
    write_file_atomically(d.path() / "b", std::string_view("2"));
    d.commit();
  }
  EXPECT_FALSE(fs::exists(out / "a"));
  EXPECT_EQ(slurp(out / "b"), "2");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);  // the old one removed
  fs::remove_all(dir);
}

}  // namespace
}  // namespace lorafast
