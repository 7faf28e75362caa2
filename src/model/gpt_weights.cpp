// Base weights of a GPT-2 model directory: every tensor found by its GPT-2 name
// (with or without the "transformer." prefix), shape-checked against the config,
// checked finite and converted to the compute precision.
#include <charconv>
#include <limits>

#include "lorafast/gpt.hpp"

namespace lorafast {
namespace {

constexpr auto bad = ErrorKind::bad_input;

class WeightSource {
 public:
  WeightSource(const TensorMap& tensors, const std::string& origin) : tensors_(tensors), origin_(origin) {
    // The prefix is decided once, from the token embedding, so that a file mixing
    // both spellings reports the missing tensor under the spelling it uses.
    prefix_ = gpt_tensor_prefix(tensors);
  }

  const std::string& prefix() const { return prefix_; }

  void check(const std::string& name, const Shape& shape) const {
    const Tensor& t = find(name);
    LF_CHECK(t.shape() == shape, bad, origin_, ": tensor ", quote(prefix_ + name), " has shape ",
             shape_str(t.shape()), ", the config implies ", shape_str(shape));
    LF_CHECK(t.all_finite(), bad, origin_, ": tensor ", quote(prefix_ + name), " has NaN or Inf values");
  }

  template <class T>
  Tensor take(const std::string& name) const { return find(name).to(dtype_of<T>()); }

 private:
  const Tensor& find(const std::string& name) const {
    const auto it = tensors_.find(prefix_ + name);
    LF_CHECK(it != tensors_.end(), bad, origin_, ": missing tensor ", quote(prefix_ + name));
    return it->second;
  }

  const TensorMap& tensors_;
  std::string origin_;
  std::string prefix_;
};

// The block index of a name "h.{i}.<rest>" (after the prefix), or -1; an index too
// large for 64 bits is returned as the largest, so it counts as an extra block.
std::int64_t block_index(const std::string& name) {
  if (name.rfind("h.", 0) != 0) return -1;
  const auto dot = name.find('.', 2);
  if (dot == std::string::npos || dot == 2) return -1;
  std::int64_t i = -1;
  const auto [end, ec] = std::from_chars(name.data() + 2, name.data() + dot, i);
  if (end != name.data() + dot) return -1;
  if (ec == std::errc::result_out_of_range) return std::numeric_limits<std::int64_t>::max();
  return ec == std::errc() ? i : -1;
}

void check_no_extra_blocks(const TensorMap& tensors, const std::string& prefix, std::int64_t n_layer,
                           const std::string& origin) {
  for (const auto& [name, tensor] : tensors) {
    if (name.rfind(prefix, 0) != 0) continue;
    const std::int64_t i = block_index(name.substr(prefix.size()));
    LF_CHECK(i < n_layer, bad, origin, ": tensor ", quote(name), " belongs to a block beyond the config's n_layer ",
             n_layer);
  }
}

// The tensors of `w` with their names and the shapes its config implies; W is
// GptWeights<T> or const GptWeights<T>.
template <class P>
struct NamedTensor {
  std::string name;
  P* tensor;
  Shape shape;
};

template <class P, class W>
std::vector<NamedTensor<P>> named_tensors(W& w) {
  const std::int64_t d = w.config.n_embd;
  std::vector<NamedTensor<P>> out{{"wte.weight", &w.wte, {w.config.vocab_size, d}},
                                  {"wpe.weight", &w.wpe, {w.config.n_positions, d}}};
  for (std::size_t i = 0; i < w.blocks.size(); ++i) {
    const std::string h = cat("h.", i, '.');
    auto& b = w.blocks[i];
    for (auto& [name, t, shape] : {NamedTensor<P>{"ln_1.weight", &b.ln_1_weight, {d}},
                                   {"ln_1.bias", &b.ln_1_bias, {d}},
                                   {"attn.c_attn.weight", &b.attn_c_attn_weight, {d, 3 * d}},
                                   {"attn.c_attn.bias", &b.attn_c_attn_bias, {3 * d}},
                                   {"attn.c_proj.weight", &b.attn_c_proj_weight, {d, d}},
                                   {"attn.c_proj.bias", &b.attn_c_proj_bias, {d}},
                                   {"ln_2.weight", &b.ln_2_weight, {d}},
                                   {"ln_2.bias", &b.ln_2_bias, {d}},
                                   {"mlp.c_fc.weight", &b.mlp_c_fc_weight, {d, 4 * d}},
                                   {"mlp.c_fc.bias", &b.mlp_c_fc_bias, {4 * d}},
                                   {"mlp.c_proj.weight", &b.mlp_c_proj_weight, {4 * d, d}},
                                   {"mlp.c_proj.bias", &b.mlp_c_proj_bias, {d}}})
      out.push_back({h + name, t, shape});
  }
  out.push_back({"ln_f.weight", &w.ln_f_weight, {d}});
  out.push_back({"ln_f.bias", &w.ln_f_bias, {d}});
  return out;
}

template <class P, class W>
std::vector<std::pair<std::string, P*>> name_pointer_pairs(W& w) {
  std::vector<std::pair<std::string, P*>> out;
  for (auto& t : named_tensors<P>(w)) out.emplace_back(std::move(t.name), t.tensor);
  return out;
}

// Weights whose tensors are still empty: names and shapes without allocating.
template <class T>
GptWeights<T> unallocated_weights(const GptConfig& config) {
  GptWeights<T> w;
  w.config = config;
  w.blocks.resize(static_cast<std::size_t>(config.n_layer));
  return w;
}

}  // namespace

std::string gpt_tensor_prefix(const TensorMap& tensors) {
  return tensors.count("transformer.wte.weight") ? "transformer." : "";
}

template <class T>
std::vector<std::pair<std::string, Tensor*>> gpt_named_tensors(GptWeights<T>& weights) {
  return name_pointer_pairs<Tensor>(weights);
}

template <class T>
std::vector<std::pair<std::string, const Tensor*>> gpt_named_tensors(const GptWeights<T>& weights) {
  return name_pointer_pairs<const Tensor>(weights);
}

template <class T>
GptWeights<T> zero_gpt_weights(const GptConfig& config) {
  GptWeights<T> w = unallocated_weights<T>(config);
  for (auto& t : named_tensors<Tensor>(w)) *t.tensor = Tensor(dtype_of<T>(), t.shape);
  return w;
}

template <class T>
GptWeights<T> gpt_weights_from_tensors(const GptConfig& config, const TensorMap& tensors,
                                       const std::string& origin) {
  config.validate(origin);
  const WeightSource src(tensors, origin);
  check_no_extra_blocks(tensors, src.prefix(), config.n_layer, origin);
  GptWeights<T> w = unallocated_weights<T>(config);
  const auto named = named_tensors<Tensor>(w);
  // Every tensor is checked against the file before any is converted, so a config
  // that describes a model larger than the file allocates nothing.
  for (const auto& t : named) src.check(t.name, t.shape);
  for (const auto& t : named) *t.tensor = src.take<T>(t.name);
  return w;
}

template <class T>
GptWeights<T> load_gpt_model(const std::filesystem::path& dir) {
  const GptConfig config = read_gpt_config(dir / "config.json");
  const auto path = dir / "model.safetensors";
  return gpt_weights_from_tensors<T>(config, read_safetensors(path).tensors, path.string());
}

template GptWeights<float> gpt_weights_from_tensors<float>(const GptConfig&, const TensorMap&, const std::string&);
template GptWeights<double> gpt_weights_from_tensors<double>(const GptConfig&, const TensorMap&, const std::string&);
template std::vector<std::pair<std::string, Tensor*>> gpt_named_tensors<float>(GptWeights<float>&);
template std::vector<std::pair<std::string, Tensor*>> gpt_named_tensors<double>(GptWeights<double>&);
template std::vector<std::pair<std::string, const Tensor*>> gpt_named_tensors<float>(const GptWeights<float>&);
template std::vector<std::pair<std::string, const Tensor*>> gpt_named_tensors<double>(const GptWeights<double>&);
template GptWeights<float> zero_gpt_weights<float>(const GptConfig&);
template GptWeights<double> zero_gpt_weights<double>(const GptConfig&);
template GptWeights<float> load_gpt_model<float>(const std::filesystem::path&);
template GptWeights<double> load_gpt_model<double>(const std::filesystem::path&);

}  // namespace lorafast
