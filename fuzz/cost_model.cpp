// Fuzz harness: the cost-model cache written by `lorafast calibrate`.
#include "harness.hpp"
#include "lorafast/cost_model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lorafast;
  return fuzz::run_reader(
      [&] { parse_cost_model(std::string(reinterpret_cast<const char*>(data), size), fuzz::origin); });
}
