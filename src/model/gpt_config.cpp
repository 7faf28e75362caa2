// config.json of a GPT-2 model directory: the six sizes the model needs, validated.
#include <cmath>

#include "core/json_read.hpp"
#include "core/text_file.hpp"
#include "lorafast/llama.hpp"

namespace lorafast {
namespace {

constexpr auto bad = ErrorKind::bad_input;
constexpr std::uint64_t max_config_bytes = 10'000'000;

std::int64_t size_field(const nlohmann::json& j, const char* key, const std::string& origin) {
  // Above 2^40 no real model fits in memory; validate() applies the tighter limits.
  return json_integer(require_field(j, key, origin), 0, std::int64_t{1} << 40, cat(origin, ": '", key, "'"));
}

// Hugging Face GPT-2 options that would change the computation: rejected unless
// they have the values this implementation computes.
void check_supported_options(const nlohmann::json& j, std::int64_t n_embd, const std::string& origin) {
  if (const auto* act = find_field(j, "activation_function")) {
    const bool tanh_gelu = *act == "gelu_new" || *act == "gelu_pytorch_tanh" || *act == "gelu_fast";
    LF_CHECK(tanh_gelu, bad, origin, ": 'activation_function' ", describe(*act),
             " is not supported (only the tanh GELU: \"gelu_new\")");
  }
  const auto* scale = find_field(j, "scale_attn_weights");
  LF_CHECK(!scale || *scale == true, bad, origin, ": 'scale_attn_weights' ", describe(*scale), " is not supported");
  const auto* by_layer = find_field(j, "scale_attn_by_inverse_layer_idx");
  LF_CHECK(!by_layer || *by_layer == false, bad, origin, ": 'scale_attn_by_inverse_layer_idx' ",
           describe(*by_layer), " is not supported");
  if (const auto* inner = find_field(j, "n_inner"); inner && !inner->is_null()) {
    LF_CHECK(*inner == 4 * n_embd, bad, origin, ": 'n_inner' ", describe(*inner), " is not supported (the MLP width must be 4 * n_embd)");
  }
}

}  // namespace

void GptConfig::validate(const std::string& origin) const {
  // Limits keep every tensor's element count (at most 4 D^2 or V D) far below 2^63.
  auto in_range = [&](const char* key, std::int64_t value, std::int64_t max) {
    LF_CHECK(value >= 1 && value <= max, bad, origin, ": '", key, "' must be in [1, ", max, "], got ", value);
  };
  in_range("n_layer", n_layer, 4096);
  in_range("n_embd", n_embd, 1 << 16);
  in_range("n_head", n_head, n_embd);
  in_range("n_positions", n_positions, 1 << 24);
  in_range("vocab_size", vocab_size, 1 << 24);
  if (is_llama()) {
    in_range("num_key_value_heads", llama.n_kv_head, n_head);
    in_range("head_dim", llama.head_dim, 1 << 12);
    in_range("intermediate_size", llama.intermediate_size, 1 << 18);
    LF_CHECK(n_head % llama.n_kv_head == 0, bad, origin, ": 'num_key_value_heads' ", llama.n_kv_head,
             " does not divide 'num_attention_heads' ", n_head);
    LF_CHECK(llama.head_dim % 2 == 0, bad, origin, ": 'head_dim' ", llama.head_dim,
             " is odd (rotary embeddings pair dimension i with i + head_dim / 2)");
    LF_CHECK(std::isfinite(layer_norm_epsilon) && layer_norm_epsilon > 0, bad, origin,
             ": 'rms_norm_eps' must be positive and finite, got ", layer_norm_epsilon);
    return;
  }
  LF_CHECK(n_embd % n_head == 0, bad, origin, ": 'n_head' ", n_head, " does not divide 'n_embd' ", n_embd);
  LF_CHECK(std::isfinite(layer_norm_epsilon) && layer_norm_epsilon > 0, bad, origin,
           ": 'layer_norm_epsilon' must be positive and finite, got ", layer_norm_epsilon);
}

GptConfig parse_gpt_config(const std::string& json_text, const std::string& origin) {
  const auto j = parse_json(json_text, origin);
  LF_CHECK(j.is_object(), bad, origin, ": not a JSON object");
  if (const auto* type = find_field(j, "model_type"); type && *type != "gpt2") {
    for (auto family :
         {ModelFamily::llama, ModelFamily::qwen2, ModelFamily::mistral, ModelFamily::qwen3, ModelFamily::gemma3,
          ModelFamily::smollm3})
      if (*type == model_family_name(family)) return parse_llama_config(j, family, origin);
    LF_CHECK(*type != "gemma3", bad, origin, ": 'model_type' \"gemma3\" (Gemma3ForConditionalGeneration, "
             "text and vision) is not supported; save its language model as a gemma3_text Gemma3ForCausalLM");
    throw Error(bad, cat(origin, ": 'model_type' ", describe(*type),
                         " is not supported (gpt2, llama, qwen2, mistral, qwen3, gemma3_text, smollm3)"));
  }
  GptConfig c;
  c.n_layer = size_field(j, "n_layer", origin);
  c.n_head = size_field(j, "n_head", origin);
  c.n_embd = size_field(j, "n_embd", origin);
  c.n_positions = size_field(j, "n_positions", origin);
  c.vocab_size = size_field(j, "vocab_size", origin);
  c.layer_norm_epsilon =
      json_number(require_field(j, "layer_norm_epsilon", origin), cat(origin, ": 'layer_norm_epsilon'"));
  c.validate(origin);
  check_supported_options(j, c.n_embd, origin);
  return c;
}

GptConfig read_gpt_config(const std::filesystem::path& path) {
  return parse_gpt_config(read_text_file(path, max_config_bytes), path.string());
}

}  // namespace lorafast
