// Fuzz harness: a training checkpoint (safetensors with JSON metadata) resumed for
// fuzz::tiny_model, in both precisions.
#include "harness.hpp"
#include "lorafast/train_checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lorafast;
  return fuzz::run_reader([&] {
    auto contents = parse_safetensors({reinterpret_cast<const std::byte*>(data), size}, fuzz::origin);
    fuzz::run_reader([&] { checkpoint_from_contents<double>(contents, fuzz::tiny_model(), fuzz::origin); });
    checkpoint_from_contents<float>(std::move(contents), fuzz::tiny_model(), fuzz::origin);
  });
}
