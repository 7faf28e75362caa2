// Writing a GPT-2 model directory in the Hugging Face layout (config.json +
// model.safetensors), e.g. the result of `lorafast pretrain`.
#include <nlohmann/json.hpp>

#include "lorafast/atomic_file.hpp"
#include "lorafast/gpt.hpp"

namespace lorafast {

std::string gpt_config_json(const GptConfig& c) {
  const nlohmann::ordered_json j = {
      {"model_type", "gpt2"},
      {"architectures", {"GPT2LMHeadModel"}},
      {"n_layer", c.n_layer},
      {"n_head", c.n_head},
      {"n_embd", c.n_embd},
      {"n_positions", c.n_positions},
      {"n_ctx", c.n_positions},
      {"vocab_size", c.vocab_size},
      {"layer_norm_epsilon", c.layer_norm_epsilon},
      {"activation_function", "gelu_new"},
      {"n_inner", nullptr},  // 4 * n_embd
      {"attn_pdrop", 0.0},
      {"embd_pdrop", 0.0},
      {"resid_pdrop", 0.0},
      {"tie_word_embeddings", true},
  };
  return j.dump(2) + "\n";
}

template <class T>
void save_gpt_model(const std::filesystem::path& dir, const GptWeights<T>& weights) {
  weights.config.validate(dir.string());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  LF_CHECK(!ec && std::filesystem::is_directory(dir), ErrorKind::bad_input, dir.string(),
           ": cannot create the model directory", ec ? ": " + ec.message() : "");
  TensorMap tensors;
  for (const auto& [name, tensor] : gpt_named_tensors(weights)) tensors["transformer." + name] = *tensor;
  write_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
  write_file_atomically(dir / "config.json", gpt_config_json(weights.config));
}

template void save_gpt_model<float>(const std::filesystem::path&, const GptWeights<float>&);
template void save_gpt_model<double>(const std::filesystem::path&, const GptWeights<double>&);

}  // namespace lorafast
