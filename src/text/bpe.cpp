#include "text/bpe.hpp"

#include <algorithm>
#include <cstdio>

#include "text/utf8.hpp"

namespace lorafast::text {
namespace {

constexpr auto bad = ErrorKind::bad_input;
constexpr std::size_t max_cached_word_bytes = 256;  // the library caches words shorter than this too
constexpr std::size_t max_cached_words = 1 << 18;

std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
}

// A merge rule's two tokens, from "a b" or ["a", "b"]; false for a "#version" line.
bool merge_parts(const json& item, const std::string& what, std::string& left, std::string& right) {
  if (item.is_string()) {
    const std::string& line = item.get_ref<const std::string&>();
    if (line.starts_with("#version")) return false;
    const std::size_t space = line.find(' ');
    LF_CHECK(space != std::string::npos && line.find(' ', space + 1) == std::string::npos, bad, what,
             " must be two tokens separated by one space, got ", quote(line));
    left = line.substr(0, space);
    right = line.substr(space + 1);
    return true;
  }
  LF_CHECK(item.is_array() && item.size() == 2, bad, what, " must be \"a b\" or [\"a\", \"b\"], got ", describe(item));
  left = json_string(item[0], what);
  right = json_string(item[1], what);
  return true;
}

}  // namespace

const std::int32_t* WordCache::find(std::string_view word, std::size_t& count) const {
  const auto it = index_.find(word);
  if (it == index_.end()) return nullptr;
  count = it->second.second;
  return ids_.data() + it->second.first;
}

void WordCache::insert(std::string_view word, const std::int32_t* ids, std::size_t count) {
  if (word.size() >= max_cached_word_bytes || index_.size() >= max_cached_words) return;
  index_.emplace(std::string(word), std::pair{static_cast<std::uint32_t>(ids_.size()), static_cast<std::uint32_t>(count)});
  ids_.insert(ids_.end(), ids, ids + count);
}

BpeModel BpeModel::parse(const json& model, const std::string& where) {
  LF_CHECK(model.is_object(), bad, where, " must be an object, got ", describe(model));
  if (const json* type = find_field(model, "type")) {
    const std::string& name = json_string(*type, field_name(where, "type"));
    LF_CHECK(name == "BPE", bad, field_name(where, "type"), ": model ", quote(name), " is not supported (BPE only)");
  }
  BpeModel m;
  m.where_ = where;
  if (const json* dropout = find_field(model, "dropout"); dropout != nullptr && !dropout->is_null()) {
    const double p = json_number(*dropout, field_name(where, "dropout"));
    LF_CHECK(p == 0, bad, field_name(where, "dropout"), ": ", p, " is not supported (dropout makes encoding random)");
  }
  if (const json* unk = find_field(model, "unk_token"); unk != nullptr && !unk->is_null())
    m.unk_token_ = json_string(*unk, field_name(where, "unk_token"));
  m.prefix_ = string_field(model, "continuing_subword_prefix", "", where);
  m.suffix_ = string_field(model, "end_of_word_suffix", "", where);
  m.fuse_unk_ = bool_field(model, "fuse_unk", false, where);
  m.byte_fallback_ = bool_field(model, "byte_fallback", false, where);
  m.ignore_merges_ = bool_field(model, "ignore_merges", false, where);

  const json& vocab = require_field(model, "vocab", where);
  LF_CHECK(vocab.is_object(), bad, field_name(where, "vocab"), " must be an object, got ", describe(vocab));
  std::int64_t max_id = -1;
  m.vocab_.reserve(vocab.size());
  for (const auto& [token, value] : vocab.items()) {
    const std::int64_t id = json_integer(value, 0, max_token_id, cat(where, ": the id of vocab token ", quote(token)));
    m.vocab_.emplace(token, static_cast<std::int32_t>(id));
    max_id = std::max(max_id, id);
  }
  const auto entries = static_cast<std::int64_t>(m.vocab_.size());
  LF_CHECK(max_id < 2 * entries + 1024, bad, field_name(where, "vocab"), ": ids up to ", max_id, " for only ",
           entries, " tokens");
  m.tokens_by_id_.assign(static_cast<std::size_t>(max_id + 1), nullptr);
  for (const auto& [token, id] : m.vocab_) {
    const std::string*& slot = m.tokens_by_id_[id];
    LF_CHECK(slot == nullptr, bad, field_name(where, "vocab"), ": tokens ", quote(*slot), " and ", quote(token),
             " both have id ", id);
    slot = &token;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    m.byte_ids_[b] = m.id_of(name).value_or(-1);
  }

  const json& merges = require_field(model, "merges", where);
  LF_CHECK(merges.is_array(), bad, field_name(where, "merges"), " must be an array, got ", describe(merges));
  m.merges_.reserve(merges.size());
  std::uint32_t rank = 0;
  std::string left, right;
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const std::string what = item_name(where, "merges", i);
    if (!merge_parts(merges[i], what, left, right)) continue;
    const auto id = [&](const std::string& token) {
      const auto found = m.id_of(token);
      LF_CHECK(found.has_value(), bad, what, ": ", quote(token), " is not in the vocabulary");
      return *found;
    };
    LF_CHECK(right.size() >= m.prefix_.size(), bad, what, ": ", quote(right), " lacks the continuing_subword_prefix");
    const std::int32_t new_id = id(left + right.substr(m.prefix_.size()));
    // A repeated pair takes its last rank, as in the library's map.
    m.merges_.insert_or_assign(pair_key(id(left), id(right)), Merge{rank++, new_id});
  }
  return m;
}

std::optional<std::int32_t> BpeModel::id_of(std::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::token_of(std::int32_t id) const {
  return id >= 0 && id < id_bound() ? tokens_by_id_[id] : nullptr;
}

const BpeModel::Merge* BpeModel::find_merge(std::int32_t left, std::int32_t right) const {
  const auto it = merges_.find(pair_key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::encode_word(std::string_view word, WordCache& cache, std::vector<std::int32_t>& out) const {
  if (ignore_merges_) {
    if (const auto id = id_of(word)) {
      out.push_back(*id);
      return;
    }
  }
  std::size_t count = 0;
  if (const std::int32_t* ids = cache.find(word, count)) {
    out.insert(out.end(), ids, ids + count);
    return;
  }
  std::vector<std::int32_t> symbols;
  merge_word(word, symbols);
  cache.insert(word, symbols.data(), symbols.size());
  out.insert(out.end(), symbols.begin(), symbols.end());
}

// The library's merge_word: one symbol per character (with the prefix after the
// first and the suffix on the last), bytes for unknown characters under
// byte_fallback, else unk_token (consecutive ones fused under fuse_unk; a pending
// unk is emitted when the next known character comes, after any byte tokens).
void BpeModel::merge_word(std::string_view word, std::vector<std::int32_t>& symbols) const {
  std::int32_t pending_unk = -1;
  std::string decorated;
  for (std::size_t pos = 0; pos < word.size();) {
    const std::size_t begin = pos;
    pos += sequence_length(static_cast<unsigned char>(word[pos]));
    std::string_view piece = word.substr(begin, pos - begin);
    if ((begin > 0 && !prefix_.empty()) || (pos == word.size() && !suffix_.empty())) {
      decorated.assign(begin > 0 ? prefix_ : std::string());
      decorated += piece;
      if (pos == word.size()) decorated += suffix_;
      piece = decorated;
    }
    if (const auto id = id_of(piece)) {
      if (pending_unk >= 0) symbols.push_back(pending_unk);
      pending_unk = -1;
      symbols.push_back(*id);
      continue;
    }
    if (byte_fallback_ && std::all_of(piece.begin(), piece.end(),
                                      [&](char c) { return byte_ids_[static_cast<unsigned char>(c)] >= 0; })) {
      for (const char c : piece) symbols.push_back(byte_ids_[static_cast<unsigned char>(c)]);
      continue;
    }
    if (!unk_token_) continue;  // the library drops the character
    const auto unk = id_of(*unk_token_);
    LF_CHECK(unk.has_value(), bad, field_name(where_, "unk_token"), ": ", quote(*unk_token_),
             " is not in the vocabulary");
    if (pending_unk >= 0 && !fuse_unk_) symbols.push_back(pending_unk);
    pending_unk = *unk;
  }
  if (pending_unk >= 0) symbols.push_back(pending_unk);
  apply_merges(symbols);
}

void BpeModel::apply_merges(std::vector<std::int32_t>& symbols) const {
  const auto n = static_cast<std::int32_t>(symbols.size());
  if (n < 2) return;
  struct Candidate {
    std::uint32_t rank;
    std::int32_t pos;
    std::int32_t new_id;
  };
  // A min-heap on (rank, pos): the lowest rank first, the leftmost among equals.
  const auto later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::vector<std::int32_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  std::vector<Candidate> heap;
  for (std::int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
    if (i + 1 < n)
      if (const Merge* m = find_merge(symbols[i], symbols[i + 1])) heap.push_back({m->rank, i, m->new_id});
  }
  std::make_heap(heap.begin(), heap.end(), later);
  const auto push = [&](std::int32_t left) {
    if (const Merge* m = find_merge(symbols[left], symbols[next[left]])) {
      heap.push_back({m->rank, left, m->new_id});
      std::push_heap(heap.begin(), heap.end(), later);
    }
  };
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate top = heap.back();
    heap.pop_back();
    const std::int32_t pos = top.pos, right = next[pos];
    if (!alive[pos] || right < 0) continue;
    const Merge* m = find_merge(symbols[pos], symbols[right]);
    if (m == nullptr || m->new_id != top.new_id) continue;  // stale: a neighbour merged since
    symbols[pos] = top.new_id;
    alive[right] = false;
    next[pos] = next[right];
    if (next[pos] >= 0) prev[next[pos]] = pos;
    if (prev[pos] >= 0) push(prev[pos]);
    if (next[pos] >= 0) push(pos);
  }
  std::int32_t kept = 0;
  for (std::int32_t i = 0; i >= 0; i = next[i]) symbols[kept++] = symbols[i];
  symbols.resize(kept);
}

}  // namespace lorafast::text
