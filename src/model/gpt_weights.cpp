// Base weights of a GPT-2 model directory: every tensor found by its GPT-2 name
// (with or without the "transformer." prefix), shape-checked against the config,
// checked finite and converted to the compute precision.
#include <charconv>

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

  template <class T>
  Tensor take(const std::string& name, const Shape& shape) const {
    const std::string full = prefix_ + name;
    const auto it = tensors_.find(full);
    LF_CHECK(it != tensors_.end(), bad, origin_, ": missing tensor '", full, "'");
    const Tensor& t = it->second;
    LF_CHECK(t.shape() == shape, bad, origin_, ": tensor '", full, "' has shape ", shape_str(t.shape()),
             ", the config implies ", shape_str(shape));
    LF_CHECK(t.all_finite(), bad, origin_, ": tensor '", full, "' has NaN or Inf values");
    return t.to(dtype_of<T>());
  }

 private:
  const TensorMap& tensors_;
  std::string origin_;
  std::string prefix_;
};

// The block index of a name "h.{i}.<rest>" (after the prefix), or -1.
std::int64_t block_index(const std::string& name) {
  if (name.rfind("h.", 0) != 0) return -1;
  const auto dot = name.find('.', 2);
  if (dot == std::string::npos || dot == 2) return -1;
  std::int64_t i = -1;
  const auto [end, ec] = std::from_chars(name.data() + 2, name.data() + dot, i);
  return ec == std::errc() && end == name.data() + dot ? i : -1;
}

void check_no_extra_blocks(const TensorMap& tensors, const std::string& prefix, std::int64_t n_layer,
                           const std::string& origin) {
  for (const auto& [name, tensor] : tensors) {
    if (name.rfind(prefix, 0) != 0) continue;
    const std::int64_t i = block_index(name.substr(prefix.size()));
    LF_CHECK(i < n_layer, bad, origin, ": tensor '", name, "' belongs to block ", i, " but the config has n_layer ",
             n_layer);
  }
}

// The tensors of `w` with their names; W is GptWeights<T> or const GptWeights<T>.
template <class P, class W>
std::vector<std::pair<std::string, P*>> named_tensors(W& w) {
  std::vector<std::pair<std::string, P*>> out{{"wte.weight", &w.wte}, {"wpe.weight", &w.wpe}};
  for (std::size_t i = 0; i < w.blocks.size(); ++i) {
    const std::string h = cat("h.", i, '.');
    auto& b = w.blocks[i];
    for (auto [name, t] : {std::pair<const char*, P*>{"ln_1.weight", &b.ln_1_weight},
                           {"ln_1.bias", &b.ln_1_bias},
                           {"attn.c_attn.weight", &b.attn_c_attn_weight},
                           {"attn.c_attn.bias", &b.attn_c_attn_bias},
                           {"attn.c_proj.weight", &b.attn_c_proj_weight},
                           {"attn.c_proj.bias", &b.attn_c_proj_bias},
                           {"ln_2.weight", &b.ln_2_weight},
                           {"ln_2.bias", &b.ln_2_bias},
                           {"mlp.c_fc.weight", &b.mlp_c_fc_weight},
                           {"mlp.c_fc.bias", &b.mlp_c_fc_bias},
                           {"mlp.c_proj.weight", &b.mlp_c_proj_weight},
                           {"mlp.c_proj.bias", &b.mlp_c_proj_bias}})
      out.emplace_back(h + name, t);
  }
  out.emplace_back("ln_f.weight", &w.ln_f_weight);
  out.emplace_back("ln_f.bias", &w.ln_f_bias);
  return out;
}

}  // namespace

std::string gpt_tensor_prefix(const TensorMap& tensors) {
  return tensors.count("transformer.wte.weight") ? "transformer." : "";
}

template <class T>
std::vector<std::pair<std::string, Tensor*>> gpt_named_tensors(GptWeights<T>& weights) {
  return named_tensors<Tensor>(weights);
}

template <class T>
std::vector<std::pair<std::string, const Tensor*>> gpt_named_tensors(const GptWeights<T>& weights) {
  return named_tensors<const Tensor>(weights);
}

template <class T>
GptWeights<T> zero_gpt_weights(const GptConfig& config) {
  const std::int64_t d = config.n_embd;
  const DType dt = dtype_of<T>();
  GptWeights<T> w;
  w.config = config;
  w.wte = Tensor(dt, {config.vocab_size, d});
  w.wpe = Tensor(dt, {config.n_positions, d});
  w.blocks.resize(static_cast<std::size_t>(config.n_layer));
  for (auto& b : w.blocks) {
    b.ln_1_weight = b.ln_1_bias = b.ln_2_weight = b.ln_2_bias = Tensor(dt, {d});
    b.attn_c_attn_weight = Tensor(dt, {d, 3 * d});
    b.attn_c_attn_bias = Tensor(dt, {3 * d});
    b.attn_c_proj_weight = Tensor(dt, {d, d});
    b.attn_c_proj_bias = Tensor(dt, {d});
    b.mlp_c_fc_weight = Tensor(dt, {d, 4 * d});
    b.mlp_c_fc_bias = Tensor(dt, {4 * d});
    b.mlp_c_proj_weight = Tensor(dt, {4 * d, d});
    b.mlp_c_proj_bias = Tensor(dt, {d});
  }
  w.ln_f_weight = w.ln_f_bias = Tensor(dt, {d});
  return w;
}

template <class T>
GptWeights<T> gpt_weights_from_tensors(const GptConfig& config, const TensorMap& tensors,
                                       const std::string& origin) {
  config.validate(origin);
  const WeightSource src(tensors, origin);
  check_no_extra_blocks(tensors, src.prefix(), config.n_layer, origin);
  GptWeights<T> w = zero_gpt_weights<T>(config);  // the shapes the config implies
  for (auto& [name, tensor] : gpt_named_tensors(w)) *tensor = src.take<T>(name, tensor->shape());
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
