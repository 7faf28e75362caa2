// Text data through the model's tokenizer, with the ids cached beside the run's
// output. Cache file (little-endian): "LFTOKID1", u64 fingerprint, u64 count, then
// count uint32 ids. The fingerprint is FNV-1a over the tokenizer file's bytes, then
// the text's, so a changed tokenizer or text never reuses stale ids.
#include <algorithm>
#include <bit>
#include <cstring>
#include <string>
#include <string_view>

#include "core/text_file.hpp"
#include "lorafast/atomic_file.hpp"
#include "lorafast/error.hpp"
#include "lorafast/tokenizer.hpp"
#include "lorafast/train_data.hpp"

namespace lorafast {
namespace {

constexpr std::string_view cache_magic = "LFTOKID1";
constexpr std::size_t cache_header = 24;  // magic, fingerprint, count

std::uint64_t fnv1a(std::uint64_t h, std::string_view bytes) {
  for (const char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

std::uint64_t read_u64(std::string_view bytes, std::size_t at) {
  std::uint64_t value;
  std::memcpy(&value, bytes.data() + at, sizeof value);
  return value;
}

// The cached ids when `bytes` is a well-formed cache of `fingerprint` whose ids fit
// the vocabulary; nothing otherwise (the caller tokenizes again).
std::optional<Tokens> cached_ids(std::string_view bytes, std::uint64_t fingerprint, std::int64_t vocab_size) {
  if (bytes.size() < cache_header || bytes.substr(0, cache_magic.size()) != cache_magic ||
      read_u64(bytes, 8) != fingerprint)
    return std::nullopt;
  const std::uint64_t count = read_u64(bytes, 16);
  if (count == 0 || (bytes.size() - cache_header) / 4 != count || (bytes.size() - cache_header) % 4 != 0)
    return std::nullopt;
  Tokens ids(count);
  for (std::size_t i = 0; i < count; ++i) {
    std::uint32_t id;
    std::memcpy(&id, bytes.data() + cache_header + 4 * i, 4);
    if (id >= static_cast<std::uint64_t>(vocab_size)) return std::nullopt;
    ids[i] = static_cast<std::int32_t>(id);
  }
  return ids;
}

std::string cache_bytes(std::uint64_t fingerprint, const Tokens& ids) {
  std::string out(cache_header + 4 * ids.size(), '\0');
  std::memcpy(out.data(), cache_magic.data(), cache_magic.size());
  const std::uint64_t count = ids.size();
  std::memcpy(out.data() + 8, &fingerprint, 8);
  std::memcpy(out.data() + 16, &count, 8);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto id = static_cast<std::uint32_t>(ids[i]);
    std::memcpy(out.data() + cache_header + 4 * i, &id, 4);
  }
  return out;
}

}  // namespace

Tokens read_text_tokens(const std::filesystem::path& data, const std::filesystem::path& tokenizer_json,
                        std::int64_t vocab_size, const std::optional<std::filesystem::path>& cache) {
  static_assert(std::endian::native == std::endian::little, "the id cache is little-endian");
  const std::string tokenizer_text = read_text_file(tokenizer_json, max_text_bytes);
  const std::string text = read_text_file(data, max_data_bytes);
  LF_CHECK(!text.empty(), ErrorKind::bad_input, data.string(), ": the data file is empty");
  const std::uint64_t fingerprint = fnv1a(fnv1a(0xcbf29ce484222325ull, tokenizer_text), text);
  if (cache && std::filesystem::is_regular_file(*cache))
    if (auto ids = cached_ids(read_text_file(*cache, max_data_bytes * 4 + cache_header), fingerprint, vocab_size))
      return *ids;
  const Tokenizer tokenizer = Tokenizer::from_json(tokenizer_text, tokenizer_json.string());
  const Tokens ids = tokenizer.encode(text);
  LF_CHECK(!ids.empty(), ErrorKind::bad_input, data.string(), ": no tokens");
  const auto outside = std::find_if(ids.begin(), ids.end(), [&](std::int32_t t) { return t < 0 || t >= vocab_size; });
  LF_CHECK(outside == ids.end(), ErrorKind::bad_input, tokenizer_json.string(), ": token id ", *outside,
           " of ", data.string(), " is outside the model's vocabulary [0, ", vocab_size, ")");
  if (cache) {
    std::error_code error;
    std::filesystem::create_directories(cache->parent_path(), error);  // the run's output directory
    LF_CHECK(!error, ErrorKind::bad_input, cache->parent_path().string(), ": cannot create: ", error.message());
    write_file_atomically(*cache, cache_bytes(fingerprint, ids));
  }
  return ids;
}

}  // namespace lorafast
