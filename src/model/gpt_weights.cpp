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
    prefix_ = tensors.count("transformer.wte.weight") ? "transformer." : "";
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

}  // namespace

template <class T>
GptWeights<T> gpt_weights_from_tensors(const GptConfig& config, const TensorMap& tensors,
                                       const std::string& origin) {
  config.validate(origin);
  const std::int64_t d = config.n_embd;
  const WeightSource src(tensors, origin);
  check_no_extra_blocks(tensors, src.prefix(), config.n_layer, origin);
  GptWeights<T> w;
  w.config = config;
  w.wte = src.take<T>("wte.weight", {config.vocab_size, d});
  w.wpe = src.take<T>("wpe.weight", {config.n_positions, d});
  for (std::int64_t i = 0; i < config.n_layer; ++i) {
    const std::string h = cat("h.", i, '.');
    GptBlockWeights b;
    b.ln_1_weight = src.take<T>(h + "ln_1.weight", {d});
    b.ln_1_bias = src.take<T>(h + "ln_1.bias", {d});
    b.attn_c_attn_weight = src.take<T>(h + "attn.c_attn.weight", {d, 3 * d});
    b.attn_c_attn_bias = src.take<T>(h + "attn.c_attn.bias", {3 * d});
    b.attn_c_proj_weight = src.take<T>(h + "attn.c_proj.weight", {d, d});
    b.attn_c_proj_bias = src.take<T>(h + "attn.c_proj.bias", {d});
    b.ln_2_weight = src.take<T>(h + "ln_2.weight", {d});
    b.ln_2_bias = src.take<T>(h + "ln_2.bias", {d});
    b.mlp_c_fc_weight = src.take<T>(h + "mlp.c_fc.weight", {d, 4 * d});
    b.mlp_c_fc_bias = src.take<T>(h + "mlp.c_fc.bias", {4 * d});
    b.mlp_c_proj_weight = src.take<T>(h + "mlp.c_proj.weight", {4 * d, d});
    b.mlp_c_proj_bias = src.take<T>(h + "mlp.c_proj.bias", {d});
    w.blocks.push_back(std::move(b));
  }
  w.ln_f_weight = src.take<T>("ln_f.weight", {d});
  w.ln_f_bias = src.take<T>("ln_f.bias", {d});
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
template GptWeights<float> load_gpt_model<float>(const std::filesystem::path&);
template GptWeights<double> load_gpt_model<double>(const std::filesystem::path&);

}  // namespace lorafast
