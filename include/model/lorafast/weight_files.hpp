// Where a model directory keeps its weights: model.safetensors, or else the shards
// model.safetensors.index.json lists (transformers' save_pretrained layouts).
#pragma once

#include <filesystem>
#include <map>
#include <set>
#include <string>

namespace lorafast {

struct WeightFiles {
  std::filesystem::path origin;  // model.safetensors, or the index: the name errors give
  std::map<std::string, std::filesystem::path> shard_of;  // tensor -> shard, from the index; empty for one file
  std::set<std::filesystem::path> files;                 // every file to read
};

// Reads the index if there is one (its shards must be relative paths inside `dir`);
// Error(bad_input) naming the index when it is malformed.
WeightFiles find_weight_files(const std::filesystem::path& dir);

}  // namespace lorafast
