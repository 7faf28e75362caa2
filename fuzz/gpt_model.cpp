// Fuzz harness: a model directory as config.json, a NUL, then model.safetensors.
// A config may describe any model; loading must never allocate what it describes
// beyond what the weights file holds.
#include "harness.hpp"
#include "lorafast/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lorafast;
  const auto files = fuzz::split_at_nul(data, size);
  const std::string_view config_text = files.first, weights = files.second;
  return fuzz::run_reader([&] {
    const GptConfig config = parse_gpt_config(std::string(config_text), fuzz::origin);
    gpt_weights_from_tensors<float>(config, parse_safetensors(fuzz::as_bytes(weights), fuzz::origin).tensors,
                                    fuzz::origin);
  });
}
