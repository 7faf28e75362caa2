// Loading a Llama-family model directory: config.json, then model.safetensors or
// the shards model.safetensors.index.json lists. Every tensor is checked (presence,
// shape) from the files' headers before any is read; then each is read, converted
// (to T, or to bf16 for a frozen matrix when asked) and transposed from nn.Linear's
// [out, in] to the [in, out] layout of LoraLinearParams, one at a time, so loading
// holds the model once plus one tensor.
#include <map>
#include <memory>
#include <set>
#include <type_traits>

#include "core/json_read.hpp"
#include "core/text_file.hpp"
#include "lorafast/llama.hpp"
#include "lorafast/safetensors_stream.hpp"
#include "lorafast/weight_files.hpp"
#include "model/decoder_parts.hpp"

namespace lorafast {
namespace {

namespace fs = std::filesystem;
constexpr auto bad = ErrorKind::bad_input;

// Where one tensor of a model is: in a file, read when needed, or in memory.
struct TensorSource {
  const SafetensorsReader* file = nullptr;
  const SafetensorsEntry* entry = nullptr;
  const Tensor* tensor = nullptr;  // when in memory
  std::string origin;              // the file's name

  const Shape& shape() const { return tensor != nullptr ? tensor->shape() : entry->shape; }
  // f(the tensor): BF16 kept as stored, F16 widened to F32.
  template <class F>
  void with(F f) const {
    if (tensor != nullptr) return f(*tensor);
    if (entry->dtype != "BF16") return f(file->read(*entry));
    Tensor t(DType::bf16, entry->shape);
    file->read_into(*entry, {t.bytes(), t.nbytes()});
    f(t);
  }
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
    if (c.family == ModelFamily::gemma3) {  // four norms: around the attention, around the MLP
      out.push_back({p + "post_attention_layernorm.weight", &b.attn_out_norm, {d}, false});
      out.push_back({p + "pre_feedforward_layernorm.weight", &b.post_norm, {d}, false});
      out.push_back({p + "post_feedforward_layernorm.weight", &b.mlp_out_norm, {d}, false});
    } else {
      out.push_back({p + "post_attention_layernorm.weight", &b.post_norm, {d}, false});
    }
    out.push_back({p + "mlp.gate_proj.weight", &b.gate_w, {f, d}, true});
    out.push_back({p + "mlp.up_proj.weight", &b.up_w, {f, d}, true});
    out.push_back({p + "mlp.down_proj.weight", &b.down_w, {d, f}, true});
  }
  out.push_back({"model.norm.weight", &w.norm, {d}, false});
  if (!c.llama.tie_word_embeddings) out.push_back({"lm_head.weight", &w.lm_head, {v, d}, false});
  return out;
}

template <class E>
void transpose(const Tensor& t, Tensor& out) {
  const std::int64_t rows = t.dim(0), cols = t.dim(1);
  const auto* s = reinterpret_cast<const E*>(t.bytes());
  auto* o = reinterpret_cast<E*>(out.bytes());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) o[c * rows + r] = s[r * cols + c];
}

// src in `dtype`, transposed if asked.
Tensor convert(const Tensor& src, DType dtype, bool transposed, const std::string& where) {
  LF_CHECK(src.all_finite(), bad, where, ": has NaN or Inf values");
  Tensor t = src.to(dtype);
  if (!transposed) return t;
  Tensor out(dtype, {t.dim(1), t.dim(0)});
  switch (dtype_size(dtype)) {
    case 2: transpose<std::uint16_t>(t, out); break;
    case 4: transpose<std::uint32_t>(t, out); break;
    default: transpose<std::uint64_t>(t, out); break;
  }
  return out;
}

// `frozen_bf16` (T = float): the frozen matrices in bf16, as store_frozen_bf16 leaves them.
template <class T>
LlamaWeights<T> from_sources(const GptConfig& config, const std::map<std::string, TensorSource>& sources,
                             const std::string& origin, bool frozen_bf16) {
  LF_CHECK(config.is_llama(), bad, origin, ": not a Llama-family model");
  config.validate(origin);
  LF_ASSERT((!frozen_bf16 || std::is_same_v<T, float>));
  LlamaWeights<T> w;
  w.config = config;
  w.blocks.resize(static_cast<std::size_t>(config.n_layer));
  const auto list = wanted(w);
  const std::set<Tensor*> bf16 = frozen_bf16 ? frozen_matrices(w) : std::set<Tensor*>{};
  auto find = [&](const Wanted& x) -> const TensorSource& {
    const auto s = sources.find(x.name);
    LF_CHECK(s != sources.end(), bad, origin, ": missing tensor ", quote(x.name));
    return s->second;
  };
  for (const auto& x : list) {
    const TensorSource& s = find(x);
    LF_CHECK(s.shape() == x.file_shape, bad, s.origin, ": tensor ", quote(x.name), " has shape ",
             shape_str(s.shape()), ", expected ", shape_str(x.file_shape));
  }
  for (const auto& x : list)
    find(x).with([&](const Tensor& t) {
      *x.tensor = convert(t, bf16.count(x.tensor) ? DType::bf16 : dtype_of<T>(), x.transpose,
                          cat(find(x).origin, ": tensor ", quote(x.name)));
    });
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
  for (const auto& x : llama_named_tensors(weights)) out[x.name] = convert(*x.tensor, dtype_of<T>(), x.transposed, x.name);
  return out;
}

template <class T>
LlamaWeights<T> llama_weights_from_tensors(const GptConfig& config, const TensorMap& tensors,
                                           const std::string& origin) {
  std::map<std::string, TensorSource> sources;
  for (const auto& [name, t] : tensors) sources[name] = {nullptr, nullptr, &t, origin};
  return from_sources<T>(config, sources, origin, false);
}

template <class T>
LlamaWeights<T> load_llama_model(const fs::path& dir, bool frozen_bf16) {
  const GptConfig config = read_gpt_config(dir / "config.json");
  const WeightFiles files = find_weight_files(dir);
  std::map<fs::path, std::unique_ptr<SafetensorsReader>> readers;  // headers only
  std::map<std::string, TensorSource> sources;
  for (const auto& f : files.files) {
    const auto& reader = *(readers[f] = std::make_unique<SafetensorsReader>(f));
    for (const auto& e : reader.entries())
      // With an index, a tensor counts in the shard the index names for it.
      if (files.shard_of.empty() || files.shard_of.count(e.name) && files.shard_of.at(e.name) == f)
        sources[e.name] = {&reader, &e, nullptr, f.string()};
  }
  return from_sources<T>(config, sources, files.origin.string(), frozen_bf16);
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
template LlamaWeights<float> load_llama_model<float>(const fs::path&, bool);
template LlamaWeights<double> load_llama_model<double>(const fs::path&, bool);

}  // namespace lorafast
