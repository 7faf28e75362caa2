// Fuzz harness: a PEFT adapter as adapter_config.json, a NUL, then
// adapter_model.safetensors, loaded for fuzz::tiny_model.
#include "harness.hpp"
#include "lorafast/gpt_lora.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lorafast;
  const auto files = fuzz::split_at_nul(data, size);
  const std::string_view config_text = files.first, tensors = files.second;
  return fuzz::run_reader([&] {
    const LoraConfig config = parse_peft_adapter_config(std::string(config_text), fuzz::origin);
    peft_adapter_from_contents<float>(config, parse_safetensors(fuzz::as_bytes(tensors), fuzz::origin),
                                      fuzz::tiny_model(), fuzz::origin);
  });
}
