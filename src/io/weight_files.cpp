// model.safetensors or model.safetensors.index.json's shards (weight_files.hpp).
#include "lorafast/weight_files.hpp"

#include "core/json_read.hpp"
#include "core/text_file.hpp"
#include "lorafast/error.hpp"

namespace lorafast {
namespace {

namespace fs = std::filesystem;
constexpr auto bad = ErrorKind::bad_input;
constexpr std::uint64_t max_index_bytes = 100'000'000;

// A shard named by the index: a relative path that stays inside the directory.
fs::path shard_path(const fs::path& dir, const std::string& name, const std::string& origin) {
  const fs::path rel(name);
  bool escapes = name.empty() || rel.is_absolute() || rel.has_root_name() || rel.has_root_directory();
  for (const auto& part : rel) escapes = escapes || part == "..";
  LF_CHECK(!escapes, bad, origin, ": shard ", quote(name), " is not a file inside the model directory");
  return dir / rel;
}

}  // namespace

WeightFiles find_weight_files(const fs::path& dir) {
  const auto single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
  if (fs::exists(single) || !fs::exists(index)) return {single, {}, {single}};
  WeightFiles files{index, {}, {}};
  const std::string origin = index.string();
  const auto j = parse_json(read_text_file(index, max_index_bytes), origin);
  const nlohmann::json& map = require_field(j, "weight_map", origin);
  LF_CHECK(map.is_object(), bad, origin, ": 'weight_map' must be an object");
  for (const auto& [name, file] : map.items()) {
    const fs::path path = shard_path(dir, json_string(file, cat(origin, ": 'weight_map' entry ", quote(name))), origin);
    files.shard_of[name] = path;
    files.files.insert(path);
  }
  return files;
}

}  // namespace lorafast
