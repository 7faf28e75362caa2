// config.json of a GPT-2 model directory: the six sizes the model needs, validated.
#include <cmath>

#include <nlohmann/json.hpp>

#include "io/text_file.hpp"
#include "lorafast/gpt.hpp"

namespace lorafast {
namespace {

constexpr auto bad = ErrorKind::bad_input;
constexpr std::uint64_t max_config_bytes = 10'000'000;

std::int64_t size_field(const nlohmann::json& j, const char* key, const std::string& origin) {
  LF_CHECK(j.contains(key), bad, origin, ": missing '", key, "'");
  const auto& v = j.at(key);
  LF_CHECK(v.is_number_integer(), bad, origin, ": '", key, "' must be an integer, got ", v.dump());
  LF_CHECK(v.is_number_unsigned() || v.get<std::int64_t>() >= 0, bad, origin, ": '", key,
           "' must be positive, got ", v.dump());
  // Above 2^40 no real model fits in memory; validate() applies the tighter limits.
  LF_CHECK(v.get<std::uint64_t>() <= (std::uint64_t{1} << 40), bad, origin, ": '", key, "' is too large: ",
           v.dump());
  return v.get<std::int64_t>();
}

// Hugging Face GPT-2 options that would change the computation: rejected unless
// they have the values this implementation computes.
void check_supported_options(const nlohmann::json& j, std::int64_t n_embd, const std::string& origin) {
  if (j.contains("activation_function")) {
    const auto& act = j.at("activation_function");
    const bool tanh_gelu = act == "gelu_new" || act == "gelu_pytorch_tanh" || act == "gelu_fast";
    LF_CHECK(tanh_gelu, bad, origin, ": 'activation_function' ", act.dump(),
             " is not supported (only the tanh GELU: \"gelu_new\")");
  }
  LF_CHECK(!j.contains("scale_attn_weights") || j.at("scale_attn_weights") == true, bad, origin,
           ": 'scale_attn_weights' false is not supported");
  LF_CHECK(!j.contains("scale_attn_by_inverse_layer_idx") || j.at("scale_attn_by_inverse_layer_idx") == false,
           bad, origin, ": 'scale_attn_by_inverse_layer_idx' true is not supported");
  if (j.contains("n_inner") && !j.at("n_inner").is_null()) {
    const auto& inner = j.at("n_inner");
    LF_CHECK(inner.is_number_integer() && inner.get<std::int64_t>() == 4 * n_embd, bad, origin, ": 'n_inner' ",
             inner.dump(), " is not supported (the MLP width must be 4 * n_embd)");
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
  LF_CHECK(n_embd % n_head == 0, bad, origin, ": 'n_head' ", n_head, " does not divide 'n_embd' ", n_embd);
  LF_CHECK(std::isfinite(layer_norm_epsilon) && layer_norm_epsilon > 0, bad, origin,
           ": 'layer_norm_epsilon' must be positive and finite, got ", layer_norm_epsilon);
}

GptConfig parse_gpt_config(const std::string& json_text, const std::string& origin) {
  const auto j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  LF_CHECK(!j.is_discarded(), bad, origin, ": not valid JSON");
  LF_CHECK(j.is_object(), bad, origin, ": not a JSON object");
  GptConfig c;
  c.n_layer = size_field(j, "n_layer", origin);
  c.n_head = size_field(j, "n_head", origin);
  c.n_embd = size_field(j, "n_embd", origin);
  c.n_positions = size_field(j, "n_positions", origin);
  c.vocab_size = size_field(j, "vocab_size", origin);
  LF_CHECK(j.contains("layer_norm_epsilon"), bad, origin, ": missing 'layer_norm_epsilon'");
  const auto& eps = j.at("layer_norm_epsilon");
  LF_CHECK(eps.is_number(), bad, origin, ": 'layer_norm_epsilon' must be a number, got ", eps.dump());
  c.layer_norm_epsilon = eps.get<double>();
  c.validate(origin);
  check_supported_options(j, c.n_embd, origin);
  return c;
}

GptConfig read_gpt_config(const std::filesystem::path& path) {
  return parse_gpt_config(read_text_file(path, max_config_bytes), path.string());
}

}  // namespace lorafast
