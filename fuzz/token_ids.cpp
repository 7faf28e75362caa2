// Fuzz harness: training data files; the first byte picks the format (bytes,
// uint16, int32), the rest is the file, for a 300-token vocabulary.
#include "harness.hpp"
#include "lorafast/train_data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lorafast;
  if (size == 0) return 0;
  constexpr DataFormat formats[] = {DataFormat::bytes, DataFormat::uint16, DataFormat::int32};
  const DataFormat format = formats[data[0] % 3];
  const std::string_view file(reinterpret_cast<const char*>(data + 1), size - 1);
  return fuzz::run_reader([&] { parse_token_ids(file, format, 300, fuzz::origin); });
}
