// export_gguf (gguf_export.hpp). The plan (keys, every tensor's GGUF name, shape,
// type and transform) is made and checked before anything is written; then each
// tensor is read (merged when an adapter is given, MergedWeights), transformed and
// encoded in order.
#include "lorafast/gguf_export.hpp"

#include <algorithm>
#include <cmath>
#include <regex>

#include "io/gguf_vocab.hpp"
#include "io/merged_weights.hpp"

namespace lorafast {
namespace {

namespace fs = std::filesystem;
constexpr auto cannot = ErrorKind::cannot_meet;

// llama.cpp's architecture name: Mistral runs as llama (convert_hf_to_gguf.py's LlamaModel).
std::string architecture(const GptConfig& c) {
  switch (c.family) {
    case ModelFamily::gpt2: return "gpt2";
    case ModelFamily::llama:
    case ModelFamily::mistral: return "llama";
    case ModelFamily::qwen2: return "qwen2";
    case ModelFamily::qwen3: return "qwen3";
    case ModelFamily::gemma3: return "gemma3";
    case ModelFamily::smollm3: return "smollm3";
  }
  return "?";
}

enum class Transform { none, transpose, permute_q, permute_k };

struct Planned {
  std::string source;  // checkpoint name (or adapter matrix)
  GgufTensor tensor;
  Transform transform = Transform::none;
  std::vector<float> computed = {};  // a tensor the converter computes (rope_freqs), when source is empty
};

// convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors for rope type llama3: the
// factor dividing each rotary frequency, frequencies computed in f32 as torch does
// there, the rest in double as Python does.
std::vector<float> llama3_rope_factors(const RopeConfig& r, std::int64_t head_dim) {
  const double low_wavelen = static_cast<double>(r.original_max_positions) / r.low_freq_factor;
  const double high_wavelen = static_cast<double>(r.original_max_positions) / r.high_freq_factor;
  std::vector<float> factors;
  for (std::int64_t i = 0; i < head_dim; i += 2) {
    const float exponent = static_cast<float>(i) / static_cast<float>(head_dim);
    const float freq = 1.0f / std::pow(static_cast<float>(r.theta), exponent);
    const double wavelen = 2 * M_PI / freq;
    if (wavelen < high_wavelen) {
      factors.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      factors.push_back(static_cast<float>(r.factor));
    } else {
      const double smooth = (static_cast<double>(r.original_max_positions) / wavelen - r.low_freq_factor) /
                            (r.high_freq_factor - r.low_freq_factor);
      factors.push_back(static_cast<float>(1 / ((1 - smooth) / r.factor + smooth)));
    }
  }
  return factors;
}

// The GGUF name of a checkpoint tensor and how its data changes; nullopt for a
// tensor llama.cpp does not read (it is then refused: nothing is dropped silently).
std::optional<std::pair<std::string, Transform>> gguf_name(const GptConfig& c, const std::string& name) {
  static const std::regex llama_block(R"(model\.layers\.(\d+)\.(.+)\.(weight|bias))");
  static const std::regex gpt_block(R"((?:transformer\.)?h\.(\d+)\.(.+)\.(weight|bias))");
  static const std::map<std::string, std::string> llama_parts{
      {"input_layernorm", "attn_norm"},  {"self_attn.q_proj", "attn_q"},       {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},    {"self_attn.o_proj", "attn_output"},  {"self_attn.q_norm", "attn_q_norm"},
      {"self_attn.k_norm", "attn_k_norm"}, {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_proj", "ffn_gate"},
      {"mlp.up_proj", "ffn_up"},         {"mlp.down_proj", "ffn_down"}};
  static const std::map<std::string, std::string> gpt_parts{
      {"ln_1", "attn_norm"}, {"attn.c_attn", "attn_qkv"}, {"attn.c_proj", "attn_output"},
      {"ln_2", "ffn_norm"},  {"mlp.c_fc", "ffn_up"},      {"mlp.c_proj", "ffn_down"}};
  std::smatch m;
  if (c.is_llama()) {
    if (name == "model.embed_tokens.weight") return std::pair{"token_embd.weight", Transform::none};
    if (name == "model.norm.weight") return std::pair{"output_norm.weight", Transform::none};
    if (name == "lm_head.weight") return std::pair{"output.weight", Transform::none};
    if (!std::regex_match(name, m, llama_block) || !llama_parts.count(m[2])) return std::nullopt;
    const bool permute = architecture(c) == "llama";  // Qwen2/Qwen3 keep HF's rotary layout
    const Transform t = permute && m[2] == "self_attn.q_proj"   ? Transform::permute_q
                        : permute && m[2] == "self_attn.k_proj" ? Transform::permute_k
                                                                : Transform::none;
    return std::pair{cat("blk.", m[1], '.', llama_parts.at(m[2]), '.', m[3]), t};
  }
  const std::string bare = name.rfind("transformer.", 0) == 0 ? name.substr(12) : name;
  for (const auto& [hf, gg] : {std::pair{"wte.weight", "token_embd.weight"}, std::pair{"wpe.weight", "position_embd.weight"},
                               std::pair{"ln_f.weight", "output_norm.weight"}, std::pair{"ln_f.bias", "output_norm.bias"}})
    if (bare == hf) return std::pair{std::string(gg), Transform::none};
  if (!std::regex_match(name, m, gpt_block) || !gpt_parts.count(m[2])) return std::nullopt;
  // Conv1D weights are [in, out]; llama.cpp wants nn.Linear's [out, in].
  return std::pair{cat("blk.", m[1], '.', gpt_parts.at(m[2]), '.', m[3]),
                   m[3] == "weight" && m[2] != "ln_1" && m[2] != "ln_2" ? Transform::transpose : Transform::none};
}

// convert_hf_to_gguf.py's LlamaModel.permute: rows reshaped (heads, 2, rows/heads/2)
// and the last two axes swapped, so each head's rotary halves interleave.
void permute_rows(const float* x, float* out, std::int64_t rows, std::int64_t cols, std::int64_t heads) {
  const std::int64_t half = rows / heads / 2;
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t j = 0; j < half; ++j)
      for (std::int64_t k = 0; k < 2; ++k) {
        const std::int64_t from = h * 2 * half + k * half + j, to = h * 2 * half + j * 2 + k;
        std::copy_n(x + from * cols, cols, out + to * cols);
      }
}

// The tensor in f32 as llama.cpp lays it out; moved through when unchanged, so the
// largest tensor (the embedding) is held once in f32.
Tensor transformed(Tensor t, Transform transform, const GptConfig& c) {
  if (t.dtype() != DType::f32) t = t.to(DType::f32);
  if (transform == Transform::none) return t;
  const std::int64_t rows = t.dim(0), cols = t.rank() == 2 ? t.dim(1) : 1;
  Tensor out(DType::f32, transform == Transform::transpose ? Shape{cols, rows} : t.shape());
  const float* x = t.data<float>();
  float* y = out.data<float>();
  if (transform == Transform::transpose)
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j) y[j * rows + i] = x[i * cols + j];
  else
    permute_rows(x, y, rows, cols, transform == Transform::permute_q ? c.n_head : c.llama.n_kv_head);
  return out;
}

// The type of a tensor: 1-D tensors stay f32; q8_0 needs rows of 32 values, else f16.
GgmlType tensor_type(const Shape& shape, GgmlType wanted) {
  if (shape.size() < 2) return GgmlType::f32;
  if (wanted == GgmlType::q8_0 && shape.back() % 32 != 0) return GgmlType::f16;
  return wanted;
}

std::uint32_t file_type(GgmlType t) {  // llama_ftype: ALL_F32, MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_BF16
  return t == GgmlType::f32 ? 0 : t == GgmlType::f16 ? 1 : t == GgmlType::q8_0 ? 7 : 32;
}

GgufMetadata hyperparameters(const GptConfig& c) {
  const std::string a = architecture(c);
  const auto u = [](std::int64_t v) { return static_cast<std::uint32_t>(v); };
  GgufMetadata m{{a + ".context_length", u(c.n_positions)},
                 {a + ".embedding_length", u(c.n_embd)},
                 {a + ".block_count", u(c.n_layer)},
                 {a + ".attention.head_count", u(c.n_head)}};
  if (!c.is_llama()) {
    m.emplace_back(a + ".feed_forward_length", u(4 * c.n_embd));
    m.emplace_back(a + ".attention.layer_norm_epsilon", static_cast<float>(c.layer_norm_epsilon));
    return m;
  }
  const LlamaConfig& l = c.llama;
  LF_CHECK(l.sliding_window == 0 || l.sliding_window >= c.n_positions, cannot, "sliding_window ", l.sliding_window,
           " shorter than the context: llama.cpp's ", a, " has no sliding window");
  LF_CHECK(c.family != ModelFamily::qwen3 || (!l.qkv_bias && !l.o_bias), cannot,
           "a Qwen3 model with attention_bias: llama.cpp's qwen3 has no attention biases");
  m.emplace_back(a + ".feed_forward_length", u(l.intermediate_size));
  m.emplace_back(a + ".attention.head_count_kv", u(l.n_kv_head));
  m.emplace_back(a + ".rope.freq_base", static_cast<float>(l.rope.theta));
  m.emplace_back(a + ".attention.layer_norm_rms_epsilon", static_cast<float>(c.layer_norm_epsilon));
  m.emplace_back(a + ".rope.dimension_count", u(c.head_dim()));
  m.emplace_back(a + ".attention.key_length", u(c.head_dim()));
  m.emplace_back(a + ".attention.value_length", u(c.head_dim()));
  if (l.rope.type == RopeConfig::Type::linear) {
    m.emplace_back(a + ".rope.scaling.type", std::string("linear"));
    m.emplace_back(a + ".rope.scaling.factor", static_cast<float>(l.rope.factor));
  }
  return m;
}

}  // namespace

GgufExportSummary export_gguf(const fs::path& model, const std::optional<fs::path>& adapter, const fs::path& out,
                              const GgufExportOptions& options) {
  LF_CHECK(!options.adapter_only || adapter, ErrorKind::usage, "--adapter-only needs --adapter");
  const MergedWeights weights(model, options.adapter_only ? std::nullopt : adapter);
  const GptConfig& c = weights.config();
  LF_CHECK(c.family != ModelFamily::gemma3 && c.family != ModelFamily::smollm3, cannot, model.string(),
           ": GGUF export of a ", model_family_name(c.family),
           " model is not supported (its norms and RoPE are not mapped)");
  const std::string arch = architecture(c);
  std::optional<GptLora<double>> lora_only;
  if (options.adapter_only) lora_only = load_peft_adapter<double>(*adapter, c);

  GgufMetadata meta{{"general.architecture", arch},
                    {"general.type", std::string(options.adapter_only ? "adapter" : "model")},
                    {"general.file_type", file_type(options.type)},
                    {"general.quantization_version", std::uint32_t{2}}};
  std::vector<Planned> plan;
  std::vector<const LoraAdapter*> adapter_of;  // adapter-only: the matrices, by plan index
  if (options.adapter_only) {
    const LoraConfig& lc = lora_only->config;
    // llama.cpp scales by alpha / rank: rsLoRA's alpha / sqrt(rank) is alpha sqrt(rank) / rank.
    const double alpha = lc.rslora ? lc.alpha * std::sqrt(static_cast<double>(lc.rank)) : lc.alpha;
    meta.emplace_back("adapter.type", std::string("lora"));
    meta.emplace_back("adapter.lora.alpha", static_cast<float>(alpha));
    const std::string gpt_prefix = weights.find("transformer.wte.weight") ? "transformer." : "";
    for (std::int64_t i = 0; i < c.n_layer; ++i)
      for (auto t : every_lora_target)
        if (const auto& a = lora_only->at(i, t)) {
          const std::string base = c.is_llama() ? cat("model.layers.", i, '.', lora_target_name(t), ".weight")
                                                : cat(gpt_prefix, "h.", i, '.', lora_target_name(t), ".weight");
          const auto mapped = gguf_name(c, base);
          LF_ASSERT(mapped);
          // A is [r, in] and B [out, r] in llama.cpp as in PEFT; the q/k permutation moves B's rows.
          const Transform b_transform = mapped->second == Transform::transpose ? Transform::none : mapped->second;
          plan.push_back({base + " lora_A", {mapped->first + ".lora_a", a->a.shape(), tensor_type(a->a.shape(), options.type)},
                          Transform::none});
          adapter_of.push_back(&*a);
          plan.push_back({base + " lora_B", {mapped->first + ".lora_b", a->b.shape(), tensor_type(a->b.shape(), options.type)},
                          b_transform});
          adapter_of.push_back(&*a);
        }
  } else {
    for (auto& m : hyperparameters(c)) meta.push_back(std::move(m));
    for (auto& m : gguf_tokenizer_metadata(model, c.vocab_size)) meta.push_back(std::move(m));
    for (const auto& item : weights.items()) {
      const bool mask_buffer = !c.is_llama() && (item.name.ends_with(".attn.bias") || item.name.ends_with(".attn.masked_bias"));
      if (mask_buffer) continue;  // old GPT-2 checkpoints' causal masks, skipped as by the converter
      const auto mapped = gguf_name(c, item.name);
      LF_CHECK(mapped, cannot, weights.origin(), ": tensor ", quote(item.name), " has no llama.cpp ", arch, " name");
      Shape shape = item.entry->shape;
      if (mapped->second == Transform::transpose) std::swap(shape[0], shape[1]);
      plan.push_back({item.name, {mapped->first, shape, tensor_type(shape, options.type)}, mapped->second});
      if (arch == "gpt2" && mapped->first == "token_embd.weight")  // llama.cpp's gpt2 reads the tied head as output
        plan.push_back({item.name, {"output.weight", shape, tensor_type(shape, options.type)}, Transform::none});
    }
    if (c.is_llama() && c.llama.rope.type == RopeConfig::Type::llama3) {
      LF_CHECK(arch == "llama", cannot, "rope type llama3 on a ", arch, " model: llama.cpp's ", arch, " has no rope_freqs");
      auto factors = llama3_rope_factors(c.llama.rope, c.head_dim());
      plan.push_back({"", {"rope_freqs.weight", {static_cast<std::int64_t>(factors.size())}, GgmlType::f32},
                      Transform::none, std::move(factors)});
    }
  }
  LF_CHECK(!fs::exists(out) || options.replace, ErrorKind::usage, out.string(), ": already exists (--force replaces it)");

  std::vector<GgufTensor> tensors;
  for (const auto& p : plan) tensors.push_back(p.tensor);
  GgufWriter writer(out, meta, tensors);
  for (std::size_t k = 0; k < plan.size(); ++k) {
    const Planned& p = plan[k];
    if (p.source.empty()) {
      writer.write(ggml_encode(p.computed, p.tensor.type));
      continue;
    }
    Tensor value = options.adapter_only ? (k % 2 == 0 ? adapter_of[k]->a : adapter_of[k]->b)
                                        : weights.value(*weights.find(p.source));
    const Tensor t = transformed(std::move(value), p.transform, c);
    writer.write(ggml_encode(std::span(t.data<float>(), static_cast<std::size_t>(t.numel())), p.tensor.type));
  }
  writer.commit();
  return {static_cast<std::int64_t>(plan.size()), static_cast<std::int64_t>(meta.size()), arch};
}

}  // namespace lorafast
