// config.json of a Llama-family model directory (llama, qwen2, mistral, qwen3), read with
// transformers 5's defaults and both spellings of the rotary settings: rope_theta +
// rope_scaling (transformers 4, "type" or "rope_type") and rope_parameters.
#include <algorithm>
#include <cmath>

#include "core/json_read.hpp"
#include "lorafast/llama.hpp"

namespace lorafast {
namespace {

using nlohmann::json;
constexpr auto bad = ErrorKind::bad_input;
constexpr std::int64_t max_size = std::int64_t{1} << 40;  // validate() applies the tight limits

struct Reader {
  const json& j;
  const std::string& origin;

  std::string what(const std::string& key) const { return cat(origin, ": '", key, "'"); }
  const json* present(const char* key) const {  // absent and null both mean "default"
    const json* v = find_field(j, key);
    return v && !v->is_null() ? v : nullptr;
  }
  std::int64_t size(const char* key) const { return json_integer(require_field(j, key, origin), 0, max_size, what(key)); }
  std::int64_t size_or(const char* key, std::int64_t fallback) const {
    const json* v = present(key);
    return v ? json_integer(*v, 0, max_size, what(key)) : fallback;
  }
  bool flag_or(const char* key, bool fallback) const {
    const json* v = present(key);
    return v ? json_bool(*v, what(key)) : fallback;
  }
};

// The one rope dict in force: rope_scaling wins over rope_parameters (as
// transformers' convert_rope_params_to_dict); a per-layer-type nested dict must
// give every layer type the same settings.
const json* rope_dict(const Reader& r) {
  const json* dict = r.present("rope_scaling");
  if (!dict || (dict->is_object() && dict->empty())) dict = r.present("rope_parameters");
  if (!dict) return nullptr;
  LF_CHECK(dict->is_object(), bad, r.what("rope_parameters"), " must be an object, got ", describe(*dict));
  const json* first = nullptr;
  for (const char* layer_type : {"full_attention", "sliding_attention"})
    if (const json* nested = find_field(*dict, layer_type); nested && nested->is_object()) {
      LF_CHECK(!first || *first == *nested, bad, r.what("rope_parameters"),
               ": different rotary settings per layer type are not supported");
      first = nested;
    }
  return first ? first : dict;
}

RopeConfig parse_rope(const Reader& r, std::int64_t max_positions) {
  RopeConfig rope;
  if (const json* theta = r.present("rope_theta")) rope.theta = json_number(*theta, r.what("rope_theta"));
  const json* dict = rope_dict(r);
  if (dict) {
    const std::string where = r.what("rope_parameters");
    auto number = [&](const char* key) {
      return json_number(require_field(*dict, key, where), cat(where, " '", key, "'"));
    };
    if (const json* theta = find_field(*dict, "rope_theta"); theta && !theta->is_null())
      rope.theta = json_number(*theta, cat(where, " 'rope_theta'"));
    const json* type = find_field(*dict, "rope_type");
    if (!type || type->is_null()) type = find_field(*dict, "type");
    const std::string name = type && !type->is_null() ? json_string(*type, cat(where, " 'rope_type'")) : "default";
    if (const json* partial = find_field(*dict, "partial_rotary_factor"); partial && !partial->is_null())
      LF_CHECK(json_number(*partial, cat(where, " 'partial_rotary_factor'")) == 1.0, bad, where,
               ": 'partial_rotary_factor' other than 1 is not supported");
    if (name == "default") {
      rope.type = RopeConfig::Type::standard;
    } else if (name == "linear") {
      rope.type = RopeConfig::Type::linear;
      rope.factor = number("factor");
    } else if (name == "llama3") {
      rope.type = RopeConfig::Type::llama3;
      rope.factor = number("factor");
      rope.low_freq_factor = number("low_freq_factor");
      rope.high_freq_factor = number("high_freq_factor");
      const json* original = find_field(*dict, "original_max_position_embeddings");
      if (!original || original->is_null()) original = r.present("original_max_position_embeddings");
      rope.original_max_positions =
          original ? json_integer(*original, 1, max_size, cat(where, " 'original_max_position_embeddings'"))
                   : max_positions;
      LF_CHECK(rope.high_freq_factor > rope.low_freq_factor && rope.low_freq_factor > 0, bad, where,
               ": llama3 needs 0 < low_freq_factor < high_freq_factor");
    } else {
      throw Error(bad, cat(where, ": rope type ", quote(name), " is not supported (default, linear, llama3)"));
    }
  }
  LF_CHECK(rope.theta > 0, bad, r.what("rope_theta"), " must be positive, got ", rope.theta);
  LF_CHECK(rope.factor > 0, bad, r.what("rope_parameters"), ": 'factor' must be positive, got ", rope.factor);
  return rope;
}

// The window and the layers it applies to, as transformers decides them: mistral,
// every layer whenever sliding_window is set; qwen2 and qwen3, with use_sliding_window,
// the layers layer_types calls "sliding_attention", else those from max_window_layers on.
void read_sliding_window(const Reader& r, ModelFamily family, std::int64_t layers, LlamaConfig& l) {
  if (family == ModelFamily::llama) return;
  const std::int64_t window = r.size_or("sliding_window", 0);
  if (window == 0 || family == ModelFamily::mistral) {
    l.sliding_window = window;
    return;
  }
  if (!r.flag_or("use_sliding_window", false)) return;
  std::vector<bool> sliding(static_cast<std::size_t>(std::max<std::int64_t>(layers, 0)));
  if (const json* types = r.present("layer_types")) {
    LF_CHECK(types->is_array() && static_cast<std::int64_t>(types->size()) == layers, bad, r.what("layer_types"),
             " must be a list of num_hidden_layers = ", layers, " layer types");
    for (std::size_t i = 0; i < sliding.size(); ++i) sliding[i] = (*types)[i] == "sliding_attention";
  } else {
    const std::int64_t first = r.size_or("max_window_layers", 28);
    for (std::size_t i = 0; i < sliding.size(); ++i) sliding[i] = static_cast<std::int64_t>(i) >= first;
  }
  if (std::find(sliding.begin(), sliding.end(), true) == sliding.end()) return;
  l.sliding_window = window;
  l.sliding_layers = std::move(sliding);
}

}  // namespace

std::string model_family_name(ModelFamily family) {
  switch (family) {
    case ModelFamily::gpt2: return "gpt2";
    case ModelFamily::llama: return "llama";
    case ModelFamily::qwen2: return "qwen2";
    case ModelFamily::mistral: return "mistral";
    case ModelFamily::qwen3: return "qwen3";
  }
  LF_ASSERT(false);
}

GptConfig parse_llama_config(const nlohmann::json& j, ModelFamily family, const std::string& origin) {
  const Reader r{j, origin};
  GptConfig c;
  c.family = family;
  c.n_embd = r.size("hidden_size");
  c.n_layer = r.size("num_hidden_layers");
  c.n_head = r.size("num_attention_heads");
  c.vocab_size = r.size("vocab_size");
  c.n_positions = r.size("max_position_embeddings");
  c.layer_norm_epsilon = 1e-6;
  if (const json* eps = r.present("rms_norm_eps")) c.layer_norm_epsilon = json_number(*eps, r.what("rms_norm_eps"));
  LlamaConfig& l = c.llama;
  l.intermediate_size = r.size("intermediate_size");
  l.n_kv_head = r.size_or("num_key_value_heads", c.n_head);
  // Qwen3Config's head_dim defaults to 128, the others' to hidden / heads.
  l.head_dim = r.size_or("head_dim", family == ModelFamily::qwen3 ? 128 : c.n_head > 0 ? c.n_embd / c.n_head : 0);
  l.tie_word_embeddings = r.flag_or("tie_word_embeddings", false);
  const bool attention_bias = r.flag_or("attention_bias", false);
  const bool bias_option = family == ModelFamily::llama || family == ModelFamily::qwen3;
  l.qkv_bias = family == ModelFamily::qwen2 || (bias_option && attention_bias);
  l.o_bias = bias_option && attention_bias;
  l.qk_norm = family == ModelFamily::qwen3;
  LF_CHECK(!r.flag_or("mlp_bias", false), bad, origin, ": 'mlp_bias' true is not supported");
  if (const json* act = r.present("hidden_act"))
    LF_CHECK(*act == "silu", bad, origin, ": 'hidden_act' ", describe(*act), " is not supported (only \"silu\")");
  read_sliding_window(r, family, c.n_layer, l);
  if (const json* range = r.present("initializer_range"))
    l.initializer_range = json_number(*range, r.what("initializer_range"));
  LF_CHECK(l.initializer_range >= 0 && std::isfinite(l.initializer_range), bad, r.what("initializer_range"),
           " must be finite and >= 0, got ", l.initializer_range);
  l.rope = parse_rope(r, c.n_positions);
  c.validate(origin);
  return c;
}

}  // namespace lorafast
