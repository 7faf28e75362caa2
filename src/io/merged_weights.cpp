// MergedWeights (merged_weights.hpp).
#include "io/merged_weights.hpp"

#include <algorithm>
#include <cctype>

#include "kernels/gemm.hpp"

namespace lorafast {
namespace {

constexpr auto bad = ErrorKind::bad_input;

// Names in the order a state dict lists them: numbers compared as numbers ("layers.2" < "layers.10").
bool natural_less(const std::string& a, const std::string& b) {
  std::size_t i = 0, j = 0;
  const auto digit = [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; };
  while (i < a.size() && j < b.size()) {
    if (digit(a[i]) && digit(b[j])) {
      std::size_t ei = i, ej = j;
      while (ei < a.size() && digit(a[ei])) ++ei;
      while (ej < b.size() && digit(b[ej])) ++ej;
      const auto na = std::stoull(a.substr(i, std::min<std::size_t>(ei - i, 18)));
      const auto nb = std::stoull(b.substr(j, std::min<std::size_t>(ej - j, 18)));
      if (na != nb) return na < nb;
      i = ei, j = ej;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i, ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

// The weight an adapter matrix pair merges into, as the checkpoint names it.
std::string weight_name(const GptConfig& model, std::int64_t layer, LoraTarget target, const std::string& gpt_prefix) {
  return model.is_llama() ? cat("model.layers.", layer, '.', lora_target_name(target), ".weight")
                          : cat(gpt_prefix, "h.", layer, '.', lora_target_name(target), ".weight");
}

}  // namespace

MergedWeights::MergedWeights(const std::filesystem::path& model, const std::optional<std::filesystem::path>& adapter)
    : config_(read_gpt_config(model / "config.json")) {
  if (adapter) lora_ = load_peft_adapter<double>(*adapter, config_);
  const WeightFiles files = find_weight_files(model);
  origin_ = files.origin.string();
  for (const auto& f : files.files) readers_.push_back(std::make_unique<SafetensorsReader>(f));
  // Every tensor once; each shard's names must be the index's.
  std::map<std::string, Item> by_name;
  for (const auto& reader : readers_)
    for (const auto& e : reader->entries()) {
      const std::string file = reader->path().string();
      LF_CHECK(by_name.emplace(e.name, Item{e.name, reader.get(), &e, nullptr}).second, bad, file, ": tensor ",
               quote(e.name), " is also in another shard");
      if (files.shard_of.empty()) continue;
      const auto it = files.shard_of.find(e.name);
      LF_CHECK(it != files.shard_of.end() && it->second == reader->path(), bad, origin_, ": tensor ", quote(e.name),
               " is in ", file, " but the index ",
               it == files.shard_of.end() ? std::string("does not list it") : "places it in " + it->second.string());
    }
  for (const auto& [name, file] : files.shard_of)
    LF_CHECK(by_name.count(name), bad, file.string(), ": missing tensor ", quote(name), " (listed in ", origin_, ')');

  if (lora_) {
    const std::string gpt_prefix = by_name.count("transformer.wte.weight") ? "transformer." : "";
    for (std::int64_t i = 0; i < config_.n_layer; ++i)
      for (auto t : every_lora_target)
        if (const auto& a = lora_->at(i, t)) {
          const std::string name = weight_name(config_, i, t, gpt_prefix);
          const auto it = by_name.find(name);
          LF_CHECK(it != by_name.end(), bad, origin_, ": missing tensor ", quote(name), " (the adapter's layer ", i,
                   ' ', lora_target_name(t), " merges into it)");
          const Shape want = config_.is_llama() ? Shape{a->b.dim(0), a->a.dim(1)} : Shape{a->a.dim(1), a->b.dim(0)};
          LF_CHECK(it->second.entry->shape == want, bad, it->second.file->path().string(), ": tensor ", quote(name),
                   " is ", shape_str(it->second.entry->shape), " but the adapter's lora_B x lora_A needs ",
                   shape_str(want));
          it->second.delta = &*a;
        }
  }
  for (auto& [name, item] : by_name) items_.push_back(item);
  std::sort(items_.begin(), items_.end(), [](const Item& x, const Item& y) { return natural_less(x.name, y.name); });
  for (std::size_t i = 0; i < items_.size(); ++i) index_[items_[i].name] = i;
}

const MergedWeights::Item* MergedWeights::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &items_[it->second];
}

Tensor MergedWeights::value(const Item& item) const {
  if (!item.delta) return item.file->read(*item.entry);
  Tensor w = item.file->read(*item.entry).to(DType::f64);
  const LoraAdapter& d = *item.delta;
  const double s = lora_->config.scaling();
  using kernels::Op;
  if (config_.is_llama())  // nn.Linear [out, in]: W += s B A
    kernels::gemm<double>(Op::none, Op::none, s, matrix<double>(d.b), matrix<double>(d.a), 1.0, matrix<double>(w));
  else  // Conv1D [in, out]: W += s A^T B^T
    kernels::gemm<double>(Op::trans, Op::trans, s, matrix<double>(d.a), matrix<double>(d.b), 1.0, matrix<double>(w));
  return w;
}

}  // namespace lorafast
