// Token data for fine-tuning and evaluation (INTERFACE.md "Models, adapters,
// fine-tuning"): byte-level tokens (vocabulary 256, one token per byte of the
// file) or pretokenized token ids, a deterministic train / validation split,
// seeded random training windows and the consecutive evaluation windows of
// `lorafast eval`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

#include "lorafast/gpt.hpp"
#include "lorafast/gpt_loss.hpp"
#include "lorafast/llama.hpp"

namespace lorafast {

using Tokens = std::vector<std::int32_t>;

constexpr std::int64_t byte_vocab_size = 256;
constexpr std::uint64_t max_data_bytes = 256ull << 20;  // 256 MiB of text -> 1 GiB of tokens

// Error(cannot_meet) unless the model's vocabulary is the byte-level one: other
// vocabularies need a tokenizer, which is not supported.
void require_byte_vocab(const GptConfig& config);

Tokens byte_tokens(std::string_view text);
// A data file as byte tokens; Error(bad_input) naming the file when it is missing,
// unreadable, empty or larger than max_data_bytes.
Tokens read_byte_tokens(const std::filesystem::path& path);

// How a data file holds its tokens: one per byte (byte-level models), token ids from
// an external tokenizer as little-endian uint16 (nanoGPT's train.bin) or int32, text
// for the model directory's own tokenizer.json (read_text_tokens), or instruction
// examples as JSON lines (instruction_data.hpp).
enum class DataFormat { bytes, uint16, int32, text, jsonl };
std::optional<DataFormat> parse_data_format(std::string_view name);

// Error(cannot_meet) unless data in `format` can feed the model: byte data needs
// the byte-level vocabulary (token ids need nothing that config.json can rule out).
void require_data_vocab(const GptConfig& config, DataFormat format);

// A data file's tokens; Error(bad_input) naming the file as read_byte_tokens, and
// when its size is not a whole number of ids or an id is outside [0, vocab_size).
Tokens read_token_file(const std::filesystem::path& path, DataFormat format, std::int64_t vocab_size);
// The same checks on a data file's bytes; `origin` names the file in errors.
Tokens parse_token_ids(std::string_view bytes, DataFormat format, std::int64_t vocab_size, const std::string& origin);

// `data` (text; invalid UTF-8 replaced by U+FFFD) tokenized by `tokenizer_json`
// (a tokenizer.json). With a cache path, the ids are kept there (uint32, with a
// fingerprint of the tokenizer file and the text), so a second run on the same text
// and tokenizer reads them instead of tokenizing again; a cache that does not match,
// or is damaged, is rewritten (its directory created if missing). Error(bad_input) naming the file for an unreadable
// text or tokenizer, or a token id outside [0, vocab_size).
Tokens read_text_tokens(const std::filesystem::path& data, const std::filesystem::path& tokenizer_json,
                        std::int64_t vocab_size, const std::optional<std::filesystem::path>& cache);

// 64-bit FNV-1a of the tokens and their count: identifies the data of a checkpoint.
struct DataFingerprint {
  std::uint64_t tokens = 0;
  std::uint64_t hash = 0;
  bool operator==(const DataFingerprint&) const = default;
};
DataFingerprint fingerprint(const Tokens& tokens);

// The first (1 - val_fraction) of the tokens train, the rest validates
// (the boundary is floor(n * (1 - val_fraction))); val_fraction in [0, 1).
struct TrainValSplit {
  Tokens train, val;
};
TrainValSplit split_train_val(const Tokens& tokens, double val_fraction);

// SplitMix64 (Steele, Lea & Flood 2014): the mixing function of the counter-based
// window sampler and the stream behind SplitMix64Rng.
std::uint64_t splitmix64(std::uint64_t x);

// Training micro-batch `micro` of update `step`: `batch` windows of seq_len + 1
// tokens; window n starts at h % (tokens.size() - seq_len), where
//   h = mix(mix(mix(mix(seed) ^ step) ^ micro) ^ n),  mix = splitmix64.
// Counter-based, so the windows depend only on (seed, step, micro, n): resuming
// at any step needs no other random state. Error(bad_input) when the tokens are
// fewer than seq_len + 1.
TokenBatch sample_windows(const Tokens& tokens, std::int64_t seq_len, std::int64_t batch, std::uint64_t seed,
                          std::int64_t step, std::int64_t micro);

// The evaluation windows: consecutive windows of seq_len + 1 tokens with stride
// seq_len, a final incomplete window dropped, i.e. floor((n - 1) / seq_len) windows
// starting at 0, seq_len, 2 seq_len, ...; each predicts its last seq_len tokens.
std::int64_t eval_window_count(std::int64_t tokens, std::int64_t seq_len);
// Windows [first, first + count) of those as one batch.
TokenBatch eval_windows(const Tokens& tokens, std::int64_t seq_len, std::int64_t first, std::int64_t count);

struct EvalResult {
  double loss = 0.0;        // mean next-token cross-entropy in nats
  std::int64_t tokens = 0;  // predicted tokens (windows * seq_len)
};

// The mean loss over the first `max_windows` evaluation windows (all when
// max_windows <= 0), run `batch` windows at a time; per-batch sums are added in
// order in double. Error(bad_input) when there is no complete window.
template <class T>
EvalResult evaluate_windows(const GptWeights<T>& weights, const GptLora<T>* lora, const Tokens& tokens,
                            std::int64_t seq_len, std::int64_t max_windows = 0, std::int64_t batch = 8);
template <class T>
EvalResult evaluate_windows(const LlamaWeights<T>& weights, const GptLora<T>* lora, const Tokens& tokens,
                            std::int64_t seq_len, std::int64_t max_windows = 0, std::int64_t batch = 8);

}  // namespace lorafast
