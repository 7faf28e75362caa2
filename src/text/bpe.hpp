// The BPE model of tokenizer.json: vocabulary, ranked merges, unk_token and
// fuse_unk, byte_fallback (<0xNN> tokens), continuing_subword_prefix,
// end_of_word_suffix and ignore_merges, as the library's models/bpe applies them.
// A word's merges run lowest rank first (leftmost among equals) over a linked list
// of symbols with a heap of candidate pairs: O(n log n) in the word's length.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/component_json.hpp"

namespace lorafast::text {

// Hashing std::string keys by string_view, so lookups need no copy.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class Value>
using StringMap = std::unordered_map<std::string, Value, StringHash, std::equal_to<>>;

// Ids of the words one encode call has met (short words only, up to a bound).
class WordCache {
 public:
  const std::int32_t* find(std::string_view word, std::size_t& count) const;
  void insert(std::string_view word, const std::int32_t* ids, std::size_t count);

 private:
  StringMap<std::pair<std::uint32_t, std::uint32_t>> index_;  // word -> (first id, count) in ids_
  std::vector<std::int32_t> ids_;
};

// Ids are at most max_token_id; the id table may be at most twice as long as the
// vocabulary (plus slack), so a file cannot make us allocate for ids it never uses.
constexpr std::int64_t max_token_id = (1 << 24) - 1;

class BpeModel {
 public:
  static BpeModel parse(const json& model, const std::string& where);

  // Appends the ids of `word` (one pre-tokenized piece, valid UTF-8, not empty).
  void encode_word(std::string_view word, WordCache& cache, std::vector<std::int32_t>& out) const;

  std::optional<std::int32_t> id_of(std::string_view token) const;
  // The token of `id`, nullptr when the vocabulary has none.
  const std::string* token_of(std::int32_t id) const;
  std::int32_t id_bound() const { return static_cast<std::int32_t>(tokens_by_id_.size()); }
  std::size_t size() const { return vocab_.size(); }

 private:
  struct Merge {
    std::uint32_t rank;
    std::int32_t new_id;
  };
  void merge_word(std::string_view word, std::vector<std::int32_t>& out) const;
  void apply_merges(std::vector<std::int32_t>& symbols) const;
  const Merge* find_merge(std::int32_t left, std::int32_t right) const;

  std::string where_;
  StringMap<std::int32_t> vocab_;
  std::vector<const std::string*> tokens_by_id_;
  std::unordered_map<std::uint64_t, Merge> merges_;
  std::int32_t byte_ids_[256];  // <0xNN> tokens, -1 where absent (byte_fallback)
  std::optional<std::string> unk_token_;
  std::string prefix_, suffix_;  // continuing_subword_prefix, end_of_word_suffix
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
};

}  // namespace lorafast::text
