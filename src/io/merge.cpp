// lorafast merge (merge.hpp). The plan is made and checked before anything is
// written: every source tensor (with its file), the adapter's A and B for the
// weights it changes, the output dtype and the shards. Then each tensor is read,
// merged in double (W + s B A, or its transpose for GPT-2's Conv1D [in, out]
// weights, PEFT's fan_in_fan_out), rounded once to the output dtype and written.
#include "lorafast/merge.hpp"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/json_read.hpp"
#include "core/text_file.hpp"
#include "kernels/gemm.hpp"
#include "lorafast/atomic_file.hpp"
#include "lorafast/bf16.hpp"
#include "lorafast/gpt_lora.hpp"
#include "lorafast/safetensors_stream.hpp"
#include "lorafast/weight_files.hpp"

namespace lorafast {
namespace {

namespace fs = std::filesystem;
constexpr auto bad = ErrorKind::bad_input;
constexpr std::uint64_t max_config_bytes = 10'000'000;

// Copied as they are when present: what save_pretrained and the tokenizer's save write.
constexpr const char* copied_files[] = {
    "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json",      "vocab.json",     "merges.txt",            "tokenizer.model",
    "chat_template.jinja",    "chat_template.json"};

const char* file_dtype(StorageType t) { return t == StorageType::f32 ? "F32" : t == StorageType::f64 ? "F64" : "BF16"; }

// double -> bf16 rounded once, to nearest even: rounding to f32 first would round
// twice. Rounded to f32 by rounding to odd (truncate, then set the last bit when
// inexact), which keeps the information RNE to 8 bits needs (24 >= 8 + 2 bits).
BFloat16 double_to_bf16(double x) {
  const float f = static_cast<float>(x);
  if (static_cast<double>(f) == x || std::isnan(x)) return to_bf16(f);
  std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  if (std::fabs(static_cast<double>(f)) > std::fabs(x)) --u;  // rounded away from zero: step back
  return to_bf16(std::bit_cast<float>(u | 1u));
}

// `n` values to the bytes of `type`.
template <class T>
std::vector<std::byte> encode(const T* values, std::size_t n, StorageType type) {
  std::vector<std::byte> out(n * safetensors_dtype_size(file_dtype(type)));
  for (std::size_t i = 0; i < n; ++i) {
    if (type == StorageType::f64) {
      const double v = values[i];
      std::memcpy(out.data() + 8 * i, &v, 8);
    } else if (type == StorageType::f32) {
      const float v = static_cast<float>(values[i]);
      std::memcpy(out.data() + 4 * i, &v, 4);
    } else {
      const BFloat16 v = std::is_same_v<T, double> ? double_to_bf16(values[i]) : to_bf16(static_cast<float>(values[i]));
      std::memcpy(out.data() + 2 * i, &v.bits, 2);
    }
  }
  return out;
}

std::vector<std::byte> encode(const Tensor& t, StorageType type) {
  const auto n = static_cast<std::size_t>(t.numel());
  return t.dtype() == DType::f64 ? encode(t.data<double>(), n, type) : encode(t.data<float>(), n, type);
}

// A weight the adapter changes: W += s B A ([out, in]) or, transposed, s A^T B^T.
struct Delta {
  const LoraAdapter* adapter = nullptr;
  bool transposed = false;  // GPT-2 Conv1D
};

struct Source {
  const SafetensorsReader* file = nullptr;
  const SafetensorsEntry* entry = nullptr;
  std::optional<Delta> delta;
};

// Names in the order a state dict lists them: numbers compared as numbers ("layers.2" < "layers.10").
bool natural_less(const std::string& a, const std::string& b) {
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      std::size_t ei = i, ej = j;
      while (ei < a.size() && std::isdigit(static_cast<unsigned char>(a[ei]))) ++ei;
      while (ej < b.size() && std::isdigit(static_cast<unsigned char>(b[ej]))) ++ej;
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

// Every source tensor once, by name; each shard's names must be the index's.
std::map<std::string, Source> list_sources(const WeightFiles& files,
                                           const std::vector<std::unique_ptr<SafetensorsReader>>& readers) {
  std::map<std::string, Source> sources;
  for (const auto& reader : readers)
    for (const auto& e : reader->entries()) {
      const std::string origin = reader->path().string();
      LF_CHECK(sources.emplace(e.name, Source{reader.get(), &e, {}}).second, bad, origin, ": tensor ", quote(e.name),
               " is also in another shard");
      if (!files.shard_of.empty()) {
        const auto it = files.shard_of.find(e.name);
        LF_CHECK(it != files.shard_of.end() && it->second == reader->path(), bad, files.origin.string(),
                 ": tensor ", quote(e.name), " is in ", origin, " but the index ",
                 it == files.shard_of.end() ? std::string("does not list it") : "places it in " + it->second.string());
      }
    }
  for (const auto& [name, file] : files.shard_of)
    LF_CHECK(sources.count(name), bad, file.string(), ": missing tensor ", quote(name), " (listed in ",
             files.origin.string(), ')');
  return sources;
}

// The base weights' dtype if they share one lorafast writes, else f32.
StorageType base_dtype(const std::map<std::string, Source>& sources) {
  std::set<std::string> seen;
  for (const auto& [name, s] : sources) seen.insert(s.entry->dtype);
  if (seen.size() == 1 && *seen.begin() == "BF16") return StorageType::bf16;
  if (seen.size() == 1 && *seen.begin() == "F64") return StorageType::f64;
  return StorageType::f32;
}

std::vector<std::byte> merged_bytes(const Source& s, double scale, StorageType type) {
  const std::string dtype = file_dtype(type);
  if (!s.delta) {
    if (s.entry->dtype == dtype) return s.file->read_bytes(*s.entry);
    return encode(s.file->read(*s.entry), type);
  }
  Tensor w = s.file->read(*s.entry).to(DType::f64);
  const LoraAdapter& d = *s.delta->adapter;
  using kernels::Op;
  if (s.delta->transposed)  // Conv1D [in, out]: W += s A^T B^T
    kernels::gemm<double>(Op::trans, Op::trans, scale, matrix<double>(d.a), matrix<double>(d.b), 1.0, matrix<double>(w));
  else  // nn.Linear [out, in]: W += s B A
    kernels::gemm<double>(Op::none, Op::none, scale, matrix<double>(d.b), matrix<double>(d.a), 1.0, matrix<double>(w));
  return encode(w, type);
}

// config.json with the dtype of the written weights (transformers 5 reads "dtype",
// earlier versions "torch_dtype": both are set when neither is present).
std::string merged_config(const fs::path& path, StorageType type) {
  const std::string origin = path.string();
  auto j = nlohmann::ordered_json::parse(read_text_file(path, max_config_bytes), nullptr, false);
  LF_CHECK(j.is_object(), bad, origin, ": not a JSON object");
  const bool neither = !j.contains("dtype") && !j.contains("torch_dtype");
  for (const char* key : {"dtype", "torch_dtype"})
    if (neither || j.contains(key)) j[key] = torch_dtype_name(type);
  return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

using Shard = std::vector<std::pair<std::string, const Source*>>;

// huggingface_hub's split_torch_state_dict_into_shards: in order, a tensor larger
// than the limit alone, else a new shard when the current one would pass it.
std::vector<Shard> split_shards(const std::vector<std::pair<std::string, const Source*>>& tensors,
                                StorageType type, std::uint64_t limit) {
  std::vector<Shard> shards;
  Shard current;
  std::uint64_t current_bytes = 0;
  const std::size_t element = safetensors_dtype_size(file_dtype(type));
  for (const auto& t : tensors) {
    const std::uint64_t bytes = static_cast<std::uint64_t>(shape_numel(t.second->entry->shape)) * element;
    if (bytes > limit) {
      shards.push_back({t});
      continue;
    }
    if (current_bytes + bytes > limit && !current.empty()) {
      shards.push_back(std::move(current));
      current = {};
      current_bytes = 0;
    }
    current.push_back(t);
    current_bytes += bytes;
  }
  if (!current.empty()) shards.push_back(std::move(current));
  return shards;
}

std::string shard_name(std::size_t i, std::size_t n) {
  if (n == 1) return "model.safetensors";
  char name[64];
  std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return name;
}

void copy_into(const fs::path& from, const fs::path& to) {
  const std::string text = read_text_file(from, std::numeric_limits<std::uint64_t>::max());
  write_file_atomically(to, text);
}

}  // namespace

MergeSummary merge_adapter(const fs::path& model_dir, const fs::path& adapter_dir, const fs::path& out,
                           const MergeOptions& options) {
  const GptConfig model = read_gpt_config(model_dir / "config.json");
  const GptLora<double> lora = load_peft_adapter<double>(adapter_dir, model);
  const WeightFiles files = find_weight_files(model_dir);
  std::vector<std::unique_ptr<SafetensorsReader>> readers;
  for (const auto& f : files.files) readers.push_back(std::make_unique<SafetensorsReader>(f));
  std::map<std::string, Source> sources = list_sources(files, readers);

  const std::string gpt_prefix = sources.count("transformer.wte.weight") ? "transformer." : "";
  const double scale = lora.config.scaling();
  for (std::int64_t i = 0; i < model.n_layer; ++i)
    for (auto t : every_lora_target)
      if (const auto& a = lora.at(i, t)) {
        const std::string name = weight_name(model, i, t, gpt_prefix);
        const auto it = sources.find(name);
        LF_CHECK(it != sources.end(), bad, files.origin.string(), ": missing tensor ", quote(name),
                 " (the adapter's layer ", i, ' ', lora_target_name(t), " merges into it)");
        const bool transposed = !model.is_llama();
        const Shape want = transposed ? Shape{a->a.dim(1), a->b.dim(0)} : Shape{a->b.dim(0), a->a.dim(1)};
        LF_CHECK(it->second.entry->shape == want, bad, it->second.file->path().string(), ": tensor ", quote(name),
                 " is ", shape_str(it->second.entry->shape), " but the adapter's lora_B x lora_A needs ",
                 shape_str(want));
        it->second.delta = Delta{&*a, transposed};
      }

  MergeSummary summary;
  summary.dtype = options.dtype.value_or(base_dtype(sources));
  std::vector<std::pair<std::string, const Source*>> ordered;
  for (const auto& [name, s] : sources) ordered.emplace_back(name, &s);
  std::sort(ordered.begin(), ordered.end(), [](const auto& x, const auto& y) { return natural_less(x.first, y.first); });
  const auto shards = split_shards(ordered, summary.dtype, options.max_shard_bytes);
  const std::string config_text = merged_config(model_dir / "config.json", summary.dtype);

  AtomicDirectory dir(out, options.replace);
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  std::uint64_t parameters = 0;
  for (std::size_t k = 0; k < shards.size(); ++k) {
    const std::string file = shard_name(k, shards.size());
    std::vector<SafetensorsEntry> entries;
    for (const auto& [name, s] : shards[k]) entries.push_back({name, file_dtype(summary.dtype), s->entry->shape});
    SafetensorsWriter writer(dir.path() / file, entries, {{"format", "pt"}});
    for (const auto& [name, s] : shards[k]) {
      const auto bytes = merged_bytes(*s, scale, summary.dtype);
      writer.write(bytes);
      summary.bytes += bytes.size();
      parameters += static_cast<std::uint64_t>(shape_numel(s->entry->shape));
      summary.merged += s->delta ? 1 : 0;
      weight_map[name] = file;
    }
    writer.commit();
  }
  summary.tensors = static_cast<std::int64_t>(ordered.size());
  summary.files = static_cast<std::int64_t>(shards.size());
  if (shards.size() > 1) {
    nlohmann::ordered_json index;
    index["metadata"] = {{"total_parameters", parameters}, {"total_size", summary.bytes}};
    std::sort(ordered.begin(), ordered.end());  // the index lists names sorted (json.dumps sort_keys)
    nlohmann::ordered_json sorted = nlohmann::ordered_json::object();
    for (const auto& [name, s] : ordered) sorted[name] = weight_map[name];
    index["weight_map"] = sorted;
    write_file_atomically(dir.path() / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  write_file_atomically(dir.path() / "config.json", config_text);
  for (const char* name : copied_files)
    if (fs::exists(model_dir / name)) copy_into(model_dir / name, dir.path() / name);
  dir.commit();
  return summary;
}

StorageType parse_storage_type(const std::string& text) {
  if (text == "f32") return StorageType::f32;
  if (text == "bf16") return StorageType::bf16;
  if (text == "f64") return StorageType::f64;
  throw Error(ErrorKind::usage, cat("--dtype ", quote(text), " is not one of f32, bf16, f64"));
}

std::string storage_type_name(StorageType type) {
  return type == StorageType::f32 ? "f32" : type == StorageType::f64 ? "f64" : "bf16";
}

std::string torch_dtype_name(StorageType type) {
  return type == StorageType::f32 ? "float32" : type == StorageType::f64 ? "float64" : "bfloat16";
}

std::uint64_t parse_shard_size(const std::string& text) {
  static const std::pair<const char*, double> units[] = {{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}};
  double multiplier = 1;
  std::string number = text;
  for (const auto& [unit, m] : units)
    if (text.size() > 2 && text.compare(text.size() - 2, 2, unit) == 0) {
      multiplier = m;
      number = text.substr(0, text.size() - 2);
    }
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(number, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  LF_CHECK(used == number.size() && used > 0 && value * multiplier >= 1 && value * multiplier < 1e18, ErrorKind::usage,
           "--max-shard-size ", quote(text), " is not a size (bytes, or a number with KB, MB, GB or TB)");
  return static_cast<std::uint64_t>(value * multiplier);
}

}  // namespace lorafast
