// Writing a Llama-family model directory in the Hugging Face layout (config.json as
// transformers 5 saves it + model.safetensors), e.g. the result of `lorafast pretrain`.
#include <nlohmann/json.hpp>

#include "lorafast/atomic_file.hpp"
#include "lorafast/llama.hpp"

namespace lorafast {
namespace {

nlohmann::ordered_json rope_json(const RopeConfig& r) {
  nlohmann::ordered_json j;
  switch (r.type) {
    case RopeConfig::Type::standard: break;
    case RopeConfig::Type::linear: j["factor"] = r.factor; break;
    case RopeConfig::Type::llama3:
      j["factor"] = r.factor;
      j["high_freq_factor"] = r.high_freq_factor;
      j["low_freq_factor"] = r.low_freq_factor;
      j["original_max_position_embeddings"] = r.original_max_positions;
      break;
  }
  j["rope_theta"] = r.theta;
  j["rope_type"] = r.type == RopeConfig::Type::standard ? "default"
                   : r.type == RopeConfig::Type::linear ? "linear"
                                                        : "llama3";
  return j;
}

}  // namespace

std::string llama_config_json(const GptConfig& c, const std::string& dtype) {
  // pretrain refuses gemma3_text and smollm3
  LF_ASSERT(c.is_llama() && c.family != ModelFamily::gemma3 && c.family != ModelFamily::smollm3);
  const LlamaConfig& l = c.llama;
  const std::string type = model_family_name(c.family);
  const char* arch = c.family == ModelFamily::llama   ? "LlamaForCausalLM"
                     : c.family == ModelFamily::qwen2 ? "Qwen2ForCausalLM"
                     : c.family == ModelFamily::qwen3 ? "Qwen3ForCausalLM"
                                                      : "MistralForCausalLM";
  const bool qwen2 = c.family == ModelFamily::qwen2;
  const bool qwen = qwen2 || c.family == ModelFamily::qwen3;  // the token ids and window keys of Qwen2/Qwen3Config
  nlohmann::ordered_json j;  // transformers writes the keys sorted
  j["architectures"] = {arch};
  if (c.family == ModelFamily::llama || c.family == ModelFamily::qwen3) j["attention_bias"] = l.qkv_bias;
  j["attention_dropout"] = 0.0;
  j["bos_token_id"] = qwen ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(1);
  j["dtype"] = dtype;
  j["eos_token_id"] = qwen ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(2);
  if (!qwen2 || l.head_dim != c.n_embd / c.n_head) j["head_dim"] = l.head_dim;
  j["hidden_act"] = "silu";
  j["hidden_size"] = c.n_embd;
  j["initializer_range"] = l.initializer_range;
  j["intermediate_size"] = l.intermediate_size;
  if (qwen) {  // a window is read back from the layer types (llama_config.cpp)
    std::vector<std::string> types;
    for (std::int64_t i = 0; i < c.n_layer; ++i) {
      const bool sliding = l.sliding_layers.empty() || l.sliding_layers[static_cast<std::size_t>(i)];
      types.push_back(l.sliding_window > 0 && sliding ? "sliding_attention" : "full_attention");
    }
    j["layer_types"] = types;
  }
  j["max_position_embeddings"] = c.n_positions;
  if (qwen) j["max_window_layers"] = 28;  // Qwen2Config's default; layer_types decides
  if (c.family == ModelFamily::llama) j["mlp_bias"] = false;
  j["model_type"] = type;
  j["num_attention_heads"] = c.n_head;
  j["num_hidden_layers"] = c.n_layer;
  j["num_key_value_heads"] = l.n_kv_head;
  j["pad_token_id"] = nullptr;
  if (c.family == ModelFamily::llama) j["pretraining_tp"] = 1;
  j["rms_norm_eps"] = c.layer_norm_epsilon;
  j["rope_parameters"] = rope_json(l.rope);
  if (c.family != ModelFamily::llama)
    j["sliding_window"] = l.sliding_window > 0 ? nlohmann::ordered_json(l.sliding_window) : nlohmann::ordered_json(nullptr);
  j["tie_word_embeddings"] = l.tie_word_embeddings;
  j["use_cache"] = true;
  if (qwen) j["use_sliding_window"] = l.sliding_window > 0;
  j["vocab_size"] = c.vocab_size;
  return j.dump(2) + "\n";
}

template <class T>
void save_llama_model(const std::filesystem::path& dir, const LlamaWeights<T>& weights) {
  weights.config.validate(dir.string());
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  LF_CHECK(!ec && std::filesystem::is_directory(dir), ErrorKind::bad_input, dir.string(),
           ": cannot create the model directory", ec ? ": " + ec.message() : "");
  write_safetensors(dir / "model.safetensors", llama_hf_tensors(weights), {{"format", "pt"}});
  write_file_atomically(dir / "config.json",
                        llama_config_json(weights.config, std::is_same_v<T, double> ? "float64" : "float32"));
}

template void save_llama_model<float>(const std::filesystem::path&, const LlamaWeights<float>&);
template void save_llama_model<double>(const std::filesystem::path&, const LlamaWeights<double>&);

}  // namespace lorafast
