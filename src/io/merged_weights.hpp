// The tensors of a model directory with a PEFT adapter merged in (or none), read
// one at a time: what `lorafast merge` writes as safetensors and `lorafast export
// gguf` as GGUF. Everything is read and checked on construction (configs, the
// adapter against the model, every file header, the shapes to merge into); values
// are read when asked.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lorafast/gpt_lora.hpp"
#include "lorafast/safetensors_stream.hpp"
#include "lorafast/weight_files.hpp"

namespace lorafast {

class MergedWeights {
 public:
  MergedWeights(const std::filesystem::path& model, const std::optional<std::filesystem::path>& adapter);

  struct Item {
    std::string name;  // as the checkpoint names it
    const SafetensorsReader* file = nullptr;
    const SafetensorsEntry* entry = nullptr;  // shape and stored dtype
    const LoraAdapter* delta = nullptr;       // the adapter merged into it, if any
  };

  const GptConfig& config() const { return config_; }
  const std::optional<GptLora<double>>& lora() const { return lora_; }
  const std::string& origin() const { return origin_; }  // the weights' file or index, for messages
  // Every tensor, in the order a state dict lists them (numbers compared as numbers).
  const std::vector<Item>& items() const { return items_; }
  const Item* find(const std::string& name) const;
  // W + s B A in f64 for a merged tensor (s A^T B^T added for GPT-2's Conv1D [in, out]
  // weights, PEFT's fan_in_fan_out); other tensors as read_safetensors loads them.
  Tensor value(const Item& item) const;

 private:
  GptConfig config_;
  std::optional<GptLora<double>> lora_;
  std::string origin_;
  std::vector<std::unique_ptr<SafetensorsReader>> readers_;
  std::vector<Item> items_;
  std::map<std::string, std::size_t> index_;
};

}  // namespace lorafast
