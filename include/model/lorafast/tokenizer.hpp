// A Hugging Face tokenizer (the `tokenizer.json` of the tokenizers library) with a BPE
// model: encode text to token ids and decode ids to text as the library does with
// add_special_tokens=False and skip_special_tokens=False (encode_with_special_tokens:
// True, for one sequence); truncation and padding are not applied. Loading checks the whole file: anything unsupported or inconsistent is
// Error(bad_input) naming the file and the part of it at fault.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lorafast {

namespace text {
struct TokenizerImpl;
}

class Tokenizer {
 public:
  // From the text of a tokenizer.json; `origin` (e.g. its path) starts every message.
  static Tokenizer from_json(std::string_view json_text, const std::string& origin);
  static Tokenizer from_file(const std::filesystem::path& path);
  // `dir`/tokenizer.json, and the bos/eos tokens of `dir`/tokenizer_config.json when
  // that file exists.
  static Tokenizer from_model_dir(const std::filesystem::path& dir);

  // Reads "bos_token" and "eos_token" (a string or an object with "content") from the
  // text of a tokenizer_config.json; each must name a token of this tokenizer.
  void read_config(std::string_view json_text, const std::string& origin);

  // The ids of `text`. Bytes that are not UTF-8 are first replaced by U+FFFD as
  // Python's bytes.decode("utf-8", errors="replace") does (one per maximal ill-formed
  // subsequence), so the result equals the library's on that decoded string.
  std::vector<std::int32_t> encode(std::string_view text) const;
  // encode(text) between the special tokens the post_processor puts around one
  // sequence (TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel,
  // Sequence): transformers' tokenizer(text). Error(cannot_meet) naming another type.
  std::vector<std::int32_t> encode_with_special_tokens(std::string_view text) const;
  // The text of `ids`; Error(bad_input) naming the first id that has no token.
  std::string decode(std::span<const std::int32_t> ids) const;

  // One more than the largest id (model vocabulary and added tokens).
  std::int32_t vocab_size() const;
  // The id of a token (model vocabulary or added token), if it has one.
  std::optional<std::int32_t> token_id(std::string_view token) const;
  // Whether `id` is an added token marked "special" (e.g. <|im_end|>, <|eot_id|>).
  bool is_special(std::int32_t id) const;
  std::optional<std::int32_t> bos_id() const;
  std::optional<std::int32_t> eos_id() const;

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

 private:
  explicit Tokenizer(std::unique_ptr<text::TokenizerImpl> impl);
  std::unique_ptr<text::TokenizerImpl> impl_;
};

// The files of `lorafast tokenize`, at most max_text_bytes; Error(bad_input) naming
// the file when unreadable or (ids) malformed.
constexpr std::uint64_t max_text_bytes = 1ull << 30;
std::string read_text_to_encode(const std::filesystem::path& path);
// Ids one per line (blank lines ignored) or {"ids": [...]}, each in [0, 2^31).
std::vector<std::int32_t> read_id_file(const std::filesystem::path& path);
std::vector<std::int32_t> parse_id_list(std::string_view text, const std::string& origin);

// `bytes` with every maximal ill-formed UTF-8 subsequence replaced by U+FFFD (the
// Unicode "substitution of maximal subparts" practice, as Python and Rust's
// from_utf8_lossy apply it).
std::string replace_invalid_utf8(std::string_view bytes);

}  // namespace lorafast
