// Fuzz harness: safetensors files and what reads their tensors — `lorafast grad`
// cases and GPT-2 base weights (of fuzz::tiny_model).
#include "harness.hpp"
#include "lorafast/grad_case.hpp"
#include "lorafast/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lorafast;
  return fuzz::run_reader([&] {
    auto contents = parse_safetensors({reinterpret_cast<const std::byte*>(data), size}, fuzz::origin);
    fuzz::run_reader([&] { gpt_weights_from_tensors<float>(fuzz::tiny_model(), contents.tensors, fuzz::origin); });
    grad_inputs_from_tensors(std::move(contents.tensors), fuzz::origin);
  });
}
