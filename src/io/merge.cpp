// lorafast merge (merge.hpp). Everything is read and checked (MergedWeights), the
// output dtype and shards chosen, before anything is written; then each tensor is
// read, merged in double, rounded once to the output dtype and written.
#include "lorafast/merge.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/json_read.hpp"
#include "core/text_file.hpp"
#include "io/merged_weights.hpp"
#include "lorafast/atomic_file.hpp"
#include "lorafast/bf16.hpp"
#include "lorafast/safetensors_stream.hpp"

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

// `n` values to the bytes of `type` (little-endian, as the host), across the threads.
template <class T>
std::vector<std::byte> encode(const T* values, std::size_t n, StorageType type) {
  std::vector<std::byte> out(n * safetensors_dtype_size(file_dtype(type)));
  const auto count = static_cast<std::int64_t>(n);
  if (type == StorageType::f64) {
    auto* dst = reinterpret_cast<double*>(out.data());
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < count; ++i) dst[i] = static_cast<double>(values[i]);
  } else if (type == StorageType::f32) {
    auto* dst = reinterpret_cast<float*>(out.data());
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < count; ++i) dst[i] = static_cast<float>(values[i]);
  } else {
    auto* dst = reinterpret_cast<std::uint16_t*>(out.data());
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < count; ++i)
      dst[i] = std::is_same_v<T, double> ? double_to_bf16(values[i]).bits : to_bf16(static_cast<float>(values[i])).bits;
  }
  return out;
}

std::vector<std::byte> encode(const Tensor& t, StorageType type) {
  const auto n = static_cast<std::size_t>(t.numel());
  return t.dtype() == DType::f64 ? encode(t.data<double>(), n, type) : encode(t.data<float>(), n, type);
}

// The base weights' dtype if they share one lorafast writes, else f32.
StorageType base_dtype(const MergedWeights& weights) {
  std::set<std::string> seen;
  for (const auto& item : weights.items()) seen.insert(item.entry->dtype);
  if (seen.size() == 1 && *seen.begin() == "BF16") return StorageType::bf16;
  if (seen.size() == 1 && *seen.begin() == "F64") return StorageType::f64;
  return StorageType::f32;
}

std::vector<std::byte> tensor_bytes(const MergedWeights& weights, const MergedWeights::Item& item, StorageType type) {
  if (!item.delta && item.entry->dtype == file_dtype(type)) return item.file->read_bytes(*item.entry);
  return encode(weights.value(item), type);
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

using Shard = std::vector<const MergedWeights::Item*>;

// huggingface_hub's split_torch_state_dict_into_shards: in order, a tensor larger
// than the limit alone, else a new shard when the current one would pass it.
std::vector<Shard> split_shards(const std::vector<MergedWeights::Item>& items, StorageType type,
                                std::uint64_t limit) {
  std::vector<Shard> shards;
  Shard current;
  std::uint64_t current_bytes = 0;
  const std::size_t element = safetensors_dtype_size(file_dtype(type));
  for (const auto& item : items) {
    const auto* t = &item;
    const std::uint64_t bytes = static_cast<std::uint64_t>(shape_numel(t->entry->shape)) * element;
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
  const MergedWeights weights(model_dir, adapter_dir);
  MergeSummary summary;
  summary.dtype = options.dtype.value_or(base_dtype(weights));
  const auto shards = split_shards(weights.items(), summary.dtype, options.max_shard_bytes);
  const std::string config_text = merged_config(model_dir / "config.json", summary.dtype);

  AtomicDirectory dir(out, options.replace);
  std::map<std::string, std::string> weight_map;  // sorted, as json.dumps(sort_keys=True) writes the index
  std::uint64_t parameters = 0;
  for (std::size_t k = 0; k < shards.size(); ++k) {
    const std::string file = shard_name(k, shards.size());
    std::vector<SafetensorsEntry> entries;
    for (const auto* item : shards[k]) entries.push_back({item->name, file_dtype(summary.dtype), item->entry->shape});
    SafetensorsWriter writer(dir.path() / file, entries, {{"format", "pt"}});
    for (const auto* item : shards[k]) {
      const auto bytes = tensor_bytes(weights, *item, summary.dtype);
      writer.write(bytes);
      summary.bytes += bytes.size();
      parameters += static_cast<std::uint64_t>(shape_numel(item->entry->shape));
      summary.merged += item->delta ? 1 : 0;
      weight_map[item->name] = file;
    }
    writer.commit();
  }
  summary.tensors = static_cast<std::int64_t>(weights.items().size());
  summary.files = static_cast<std::int64_t>(shards.size());
  if (shards.size() > 1) {
    nlohmann::ordered_json index;
    index["metadata"] = {{"total_parameters", parameters}, {"total_size", summary.bytes}};
    index["weight_map"] = weight_map;
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
