// config.json of a Llama-family model directory (llama, qwen2, mistral, qwen3, gemma3_text, smollm3), read with
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

// The rotary settings of `dict` (nullptr: the default type) on base `theta` unless
// the dict names its own rope_theta.
RopeConfig rope_settings(const Reader& r, const json* dict, double theta, std::int64_t max_positions) {
  RopeConfig rope;
  rope.theta = theta;
  if (dict) {
    LF_CHECK(dict->is_object(), bad, r.what("rope_parameters"), " must be an object, got ", describe(*dict));
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

double number_or(const Reader& r, const char* key, double fallback) {
  const json* v = r.present(key);
  return v ? json_number(*v, r.what(key)) : fallback;
}

RopeConfig parse_rope(const Reader& r, std::int64_t max_positions) {
  return rope_settings(r, rope_dict(r), number_or(r, "rope_theta", RopeConfig{}.theta), max_positions);
}

// Gemma 3's two RoPEs, as Gemma3TextConfig.convert_rope_params_to_dict reads them:
// rope_parameters per layer type (transformers 5), else rope_theta (default 1e6) with
// rope_scaling for the full-attention layers and rope_local_base_freq (default 1e4)
// for the sliding ones.
void read_gemma3_rope(const Reader& r, std::int64_t max_positions, LlamaConfig& l) {
  const json* params = r.present("rope_parameters");
  LF_CHECK(!params || (params->is_object() && (params->empty() || find_field(*params, "full_attention") ||
                                               find_field(*params, "sliding_attention"))),
           bad, r.what("rope_parameters"), " must map full_attention and sliding_attention to their settings");
  auto of = [&](const char* layer_type) -> const json* {
    const json* v = params ? find_field(*params, layer_type) : nullptr;
    return v && !v->is_null() ? v : nullptr;
  };
  const json* full = r.present("rope_scaling");
  if (!full || (full->is_object() && full->empty())) full = of("full_attention");
  l.rope = rope_settings(r, full, number_or(r, "rope_theta", 1e6), max_positions);
  l.sliding_rope = rope_settings(r, of("sliding_attention"), number_or(r, "rope_local_base_freq", 1e4), max_positions);
}

// Gemma 3's sliding layers: those layer_types calls "sliding_attention", else all but
// every sliding_window_pattern-th (default 6), as Gemma3TextConfig decides them.
void read_gemma3_layers(const Reader& r, std::int64_t layers, LlamaConfig& l) {
  l.sliding_window = r.size_or("sliding_window", 4096);
  LF_CHECK(l.sliding_window >= 1, bad, r.what("sliding_window"), " must be at least 1, got ", l.sliding_window);
  l.sliding_layers.assign(static_cast<std::size_t>(std::max<std::int64_t>(layers, 0)), false);
  if (const json* types = r.present("layer_types")) {
    LF_CHECK(types->is_array() && static_cast<std::int64_t>(types->size()) == layers, bad, r.what("layer_types"),
             " must be a list of num_hidden_layers = ", layers, " layer types");
    for (std::size_t i = 0; i < l.sliding_layers.size(); ++i) {
      const json& t = (*types)[i];
      LF_CHECK(t == "sliding_attention" || t == "full_attention", bad, r.what("layer_types"), ": ", describe(t),
               " is not \"sliding_attention\" or \"full_attention\"");
      l.sliding_layers[i] = t == "sliding_attention";
    }
    return;
  }
  const std::int64_t pattern = r.size_or("sliding_window_pattern", r.size_or("_sliding_window_pattern", 6));
  LF_CHECK(pattern >= 1, bad, r.what("sliding_window_pattern"), " must be at least 1");
  for (std::size_t i = 0; i < l.sliding_layers.size(); ++i)
    l.sliding_layers[i] = (static_cast<std::int64_t>(i) + 1) % pattern != 0;
}

// What Gemma 3 adds to the Llama fields; the parts its family implies are decoder_spec's.
void read_gemma3(const Reader& r, std::int64_t layers, std::int64_t max_positions, LlamaConfig& l) {
  const json* act = r.present("hidden_activation");
  if (!act) act = r.present("hidden_act");
  LF_CHECK(!act || *act == "gelu_pytorch_tanh", bad, r.what("hidden_activation"), " ",
           act ? describe(*act) : std::string(), " is not supported (only \"gelu_pytorch_tanh\")");
  LF_CHECK(!r.present("attn_logit_softcapping"), bad, r.what("attn_logit_softcapping"),
           " is not supported (attention soft-capping); it must be null");
  LF_CHECK(!r.flag_or("use_bidirectional_attention", false), bad, r.what("use_bidirectional_attention"),
           " true is not supported (only causal attention)");
  l.query_pre_attn_scalar = number_or(r, "query_pre_attn_scalar", 256);
  LF_CHECK(l.query_pre_attn_scalar > 0 && std::isfinite(l.query_pre_attn_scalar), bad,
           r.what("query_pre_attn_scalar"), " must be positive, got ", l.query_pre_attn_scalar);
  l.final_logit_softcapping = number_or(r, "final_logit_softcapping", 0);
  LF_CHECK(l.final_logit_softcapping >= 0 && std::isfinite(l.final_logit_softcapping), bad,
           r.what("final_logit_softcapping"), " must be positive or null, got ", l.final_logit_softcapping);
  read_gemma3_layers(r, layers, l);
  read_gemma3_rope(r, max_positions, l);
}

// SmolLM3's layers without RoPE ("NoPE"): no_rope_layers (1: RoPE, 0: none), else every
// no_rope_layer_interval-th (default 4); with use_sliding_window and sliding_window,
// the window applies to the layers layer_types calls "sliding_attention", else to the
// NoPE ones, as SmolLM3Config decides them.
void read_smollm3_layers(const Reader& r, std::int64_t layers, LlamaConfig& l) {
  l.rope_layers.assign(static_cast<std::size_t>(std::max<std::int64_t>(layers, 0)), true);
  if (const json* list = r.present("no_rope_layers")) {
    LF_CHECK(list->is_array() && static_cast<std::int64_t>(list->size()) == layers, bad, r.what("no_rope_layers"),
             " must be a list of num_hidden_layers = ", layers, " flags");
    for (std::size_t i = 0; i < l.rope_layers.size(); ++i) {
      const json& v = (*list)[i];
      LF_CHECK(v == 0 || v == 1, bad, r.what("no_rope_layers"), ": ", describe(v), " is not 0 (no RoPE) or 1 (RoPE)");
      l.rope_layers[i] = v == 1;
    }
  } else {
    const std::int64_t interval = r.size_or("no_rope_layer_interval", 4);
    LF_CHECK(interval >= 1, bad, r.what("no_rope_layer_interval"), " must be at least 1");
    for (std::size_t i = 0; i < l.rope_layers.size(); ++i)
      l.rope_layers[i] = (static_cast<std::int64_t>(i) + 1) % interval != 0;
  }
  const std::int64_t window = r.size_or("sliding_window", 0);
  if (!r.flag_or("use_sliding_window", false) || window == 0) return;
  std::vector<bool> sliding(l.rope_layers.size());
  const json* types = r.present("layer_types");
  LF_CHECK(!types || (types->is_array() && static_cast<std::int64_t>(types->size()) == layers), bad,
           r.what("layer_types"), " must be a list of num_hidden_layers = ", layers, " layer types");
  for (std::size_t i = 0; i < sliding.size(); ++i)
    sliding[i] = types ? (*types)[i] == "sliding_attention" : !l.rope_layers[i];
  if (std::find(sliding.begin(), sliding.end(), true) == sliding.end()) return;
  l.sliding_window = window;
  l.sliding_layers = std::move(sliding);
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
    case ModelFamily::gemma3: return "gemma3_text";
    case ModelFamily::smollm3: return "smollm3";
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
  const bool gemma3 = family == ModelFamily::gemma3;
  // Qwen3Config's head_dim defaults to 128, Gemma3TextConfig's to 256, the others' to hidden / heads.
  l.head_dim = r.size_or("head_dim", family == ModelFamily::qwen3 ? 128
                                     : gemma3                     ? 256
                                     : c.n_head > 0               ? c.n_embd / c.n_head
                                                                  : 0);
  const bool smollm3 = family == ModelFamily::smollm3;
  l.tie_word_embeddings = r.flag_or("tie_word_embeddings", gemma3 || smollm3);
  const bool attention_bias = r.flag_or("attention_bias", false);
  const bool bias_option = family == ModelFamily::llama || family == ModelFamily::qwen3 || gemma3 || smollm3;
  l.qkv_bias = family == ModelFamily::qwen2 || (bias_option && attention_bias);
  l.o_bias = bias_option && attention_bias;
  l.qk_norm = family == ModelFamily::qwen3 || gemma3;
  LF_CHECK(!r.flag_or("mlp_bias", false), bad, origin, ": 'mlp_bias' true is not supported");
  if (const json* act = r.present("hidden_act"); act && !gemma3)
    LF_CHECK(*act == "silu", bad, origin, ": 'hidden_act' ", describe(*act), " is not supported (only \"silu\")");
  if (const json* range = r.present("initializer_range"))
    l.initializer_range = json_number(*range, r.what("initializer_range"));
  LF_CHECK(l.initializer_range >= 0 && std::isfinite(l.initializer_range), bad, r.what("initializer_range"),
           " must be finite and >= 0, got ", l.initializer_range);
  if (gemma3) {
    read_gemma3(r, c.n_layer, c.n_positions, l);
  } else if (smollm3) {
    read_smollm3_layers(r, c.n_layer, l);
    l.rope = parse_rope(r, c.n_positions);
  } else {
    read_sliding_window(r, family, c.n_layer, l);
    l.rope = parse_rope(r, c.n_positions);
  }
  c.validate(origin);
  return c;
}

}  // namespace lorafast
