// Loading a Llama-family model directory: config.json, then model.safetensors or
// the shards model.safetensors.index.json lists. Every tensor is checked (presence,
// shape) before any is converted, then converted to T and transposed from
// nn.Linear's [out, in] to the [in, out] layout of LoraLinearParams.
#include <map>
#include <set>

#include "core/json_read.hpp"
#include "core/text_file.hpp"
#include "lorafast/llama.hpp"
#include "lorafast/weight_files.hpp"

namespace lorafast {
namespace {

namespace fs = std::filesystem;
constexpr auto bad = ErrorKind::bad_input;

// Where each tensor of a model is: its file's tensors and that file's name.
struct TensorSource {
  const TensorMap* tensors = nullptr;
  std::string origin;
};

struct Wanted {
  std::string name;
  Tensor* tensor;
  Shape file_shape;   // as stored: [out, in] for a projection, [n] for a vector
  bool transpose;     // a projection: stored [out, in], kept [in, out]
};

template <class T>
std::vector<Wanted> wanted(LlamaWeights<T>& w) {
  const GptConfig& c = w.config;
  const std::int64_t d = c.n_embd, v = c.vocab_size, f = c.llama.intermediate_size;
  const std::int64_t q = c.n_head * c.head_dim(), kv = c.llama.n_kv_head * c.head_dim();
  std::vector<Wanted> out{{"model.embed_tokens.weight", &w.embed, {v, d}, false}};
  for (std::int64_t i = 0; i < c.n_layer; ++i) {
    auto& b = w.blocks[static_cast<std::size_t>(i)];
    const std::string p = cat("model.layers.", i, '.');
    out.push_back({p + "input_layernorm.weight", &b.input_norm, {d}, false});
    out.push_back({p + "self_attn.q_proj.weight", &b.q_w, {q, d}, true});
    out.push_back({p + "self_attn.k_proj.weight", &b.k_w, {kv, d}, true});
    out.push_back({p + "self_attn.v_proj.weight", &b.v_w, {kv, d}, true});
    out.push_back({p + "self_attn.o_proj.weight", &b.o_w, {d, q}, true});
    if (c.llama.qkv_bias) {
      out.push_back({p + "self_attn.q_proj.bias", &b.q_b, {q}, false});
      out.push_back({p + "self_attn.k_proj.bias", &b.k_b, {kv}, false});
      out.push_back({p + "self_attn.v_proj.bias", &b.v_b, {kv}, false});
    }
    if (c.llama.o_bias) out.push_back({p + "self_attn.o_proj.bias", &b.o_b, {d}, false});
    if (c.llama.qk_norm) {
      out.push_back({p + "self_attn.q_norm.weight", &b.q_norm, {c.head_dim()}, false});
      out.push_back({p + "self_attn.k_norm.weight", &b.k_norm, {c.head_dim()}, false});
    }
    out.push_back({p + "post_attention_layernorm.weight", &b.post_norm, {d}, false});
    out.push_back({p + "mlp.gate_proj.weight", &b.gate_w, {f, d}, true});
    out.push_back({p + "mlp.up_proj.weight", &b.up_w, {f, d}, true});
    out.push_back({p + "mlp.down_proj.weight", &b.down_w, {d, f}, true});
  }
  out.push_back({"model.norm.weight", &w.norm, {d}, false});
  if (!c.llama.tie_word_embeddings) out.push_back({"lm_head.weight", &w.lm_head, {v, d}, false});
  return out;
}

template <class T>
Tensor convert(const Tensor& src, bool transpose, const std::string& where) {
  LF_CHECK(src.all_finite(), bad, where, ": has NaN or Inf values");
  Tensor t = src.to(dtype_of<T>());
  if (!transpose) return t;
  const std::int64_t rows = t.dim(0), cols = t.dim(1);
  Tensor out(dtype_of<T>(), {cols, rows});
  const T* s = t.data<T>();
  T* o = out.data<T>();
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) o[c * rows + r] = s[r * cols + c];
  return out;
}

template <class T>
LlamaWeights<T> from_sources(const GptConfig& config, const std::map<std::string, TensorSource>& sources,
                             const std::string& origin) {
  LF_CHECK(config.is_llama(), bad, origin, ": not a Llama-family model");
  config.validate(origin);
  LlamaWeights<T> w;
  w.config = config;
  w.blocks.resize(static_cast<std::size_t>(config.n_layer));
  const auto list = wanted(w);
  auto find = [&](const Wanted& x) -> std::pair<const Tensor*, std::string> {
    const auto s = sources.find(x.name);
    LF_CHECK(s != sources.end(), bad, origin, ": missing tensor ", quote(x.name));
    const auto it = s->second.tensors->find(x.name);
    LF_CHECK(it != s->second.tensors->end(), bad, s->second.origin, ": missing tensor ", quote(x.name));
    return {&it->second, s->second.origin};
  };
  for (const auto& x : list) {
    const auto [t, file] = find(x);
    LF_CHECK(t->shape() == x.file_shape, bad, file, ": tensor ", quote(x.name), " has shape ", shape_str(t->shape()),
             ", expected ", shape_str(x.file_shape));
  }
  for (const auto& x : list) {
    const auto [t, file] = find(x);
    *x.tensor = convert<T>(*t, x.transpose, cat(file, ": tensor ", quote(x.name)));
  }
  return w;
}

}  // namespace

template <class T>
std::vector<LlamaNamedTensor<Tensor>> llama_named_tensors(LlamaWeights<T>& weights) {
  std::vector<LlamaNamedTensor<Tensor>> out;
  for (const auto& x : wanted(weights)) out.push_back({x.name, x.tensor, x.transpose});
  return out;
}

template <class T>
std::vector<LlamaNamedTensor<const Tensor>> llama_named_tensors(const LlamaWeights<T>& weights) {
  std::vector<LlamaNamedTensor<const Tensor>> out;
  for (const auto& x : wanted(const_cast<LlamaWeights<T>&>(weights))) out.push_back({x.name, x.tensor, x.transpose});
  return out;
}

template <class T>
LlamaWeights<T> zero_llama_weights(const GptConfig& config) {
  LF_ASSERT(config.is_llama());
  LlamaWeights<T> w;
  w.config = config;
  w.blocks.resize(static_cast<std::size_t>(config.n_layer));
  for (const auto& x : wanted(w))
    *x.tensor = Tensor(dtype_of<T>(), x.transpose ? Shape{x.file_shape[1], x.file_shape[0]} : x.file_shape);
  return w;
}

template <class T>
TensorMap llama_hf_tensors(const LlamaWeights<T>& weights) {
  TensorMap out;
  for (const auto& x : llama_named_tensors(weights)) out[x.name] = convert<T>(*x.tensor, x.transposed, x.name);
  return out;
}

template <class T>
LlamaWeights<T> llama_weights_from_tensors(const GptConfig& config, const TensorMap& tensors,
                                           const std::string& origin) {
  std::map<std::string, TensorSource> sources;
  for (const auto& [name, t] : tensors) sources[name] = {&tensors, origin};
  return from_sources<T>(config, sources, origin);
}

template <class T>
LlamaWeights<T> load_llama_model(const fs::path& dir) {
  const GptConfig config = read_gpt_config(dir / "config.json");
  const WeightFiles files = find_weight_files(dir);
  const std::string origin = files.origin.string();
  if (files.shard_of.empty()) return llama_weights_from_tensors<T>(config, read_safetensors(files.origin).tensors, origin);
  std::map<fs::path, TensorMap> contents;
  for (const auto& f : files.files) contents[f] = read_safetensors(f).tensors;
  std::map<std::string, TensorSource> sources;
  for (const auto& [name, f] : files.shard_of) sources[name] = {&contents[f], f.string()};
  return from_sources<T>(config, sources, origin);
}

#define LORAFAST_INSTANTIATE(T)                                                                       \
  template std::vector<LlamaNamedTensor<Tensor>> llama_named_tensors<T>(LlamaWeights<T>&);            \
  template std::vector<LlamaNamedTensor<const Tensor>> llama_named_tensors<T>(const LlamaWeights<T>&); \
  template LlamaWeights<T> zero_llama_weights<T>(const GptConfig&);                                   \
  template TensorMap llama_hf_tensors<T>(const LlamaWeights<T>&);
LORAFAST_INSTANTIATE(float)
LORAFAST_INSTANTIATE(double)
#undef LORAFAST_INSTANTIATE
template LlamaWeights<float> llama_weights_from_tensors<float>(const GptConfig&, const TensorMap&, const std::string&);
template LlamaWeights<double> llama_weights_from_tensors<double>(const GptConfig&, const TensorMap&,
                                                                 const std::string&);
template LlamaWeights<float> load_llama_model<float>(const fs::path&);
template LlamaWeights<double> load_llama_model<double>(const fs::path&);

}  // namespace lorafast
