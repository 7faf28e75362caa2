// Byte tokens and token-id files, the train / validation split, training and evaluation windows.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "core/text_file.hpp"
#include "lorafast/train_data.hpp"

namespace lorafast {
namespace {
constexpr auto bad = ErrorKind::bad_input;
}

void require_byte_vocab(const GptConfig& config) {
  LF_CHECK(config.vocab_size == byte_vocab_size, ErrorKind::cannot_meet, "the model's vocab_size is ",
           config.vocab_size, ": only byte-level models (vocab_size ", byte_vocab_size,
           ", one token per byte) are supported; a tokenizer is not supported yet");
}

Tokens byte_tokens(std::string_view text) {
  Tokens tokens(text.size());
  std::transform(text.begin(), text.end(), tokens.begin(),
                 [](char c) { return static_cast<std::int32_t>(static_cast<unsigned char>(c)); });
  return tokens;
}

Tokens read_byte_tokens(const std::filesystem::path& path) {
  return parse_token_ids(read_text_file(path, max_data_bytes), DataFormat::bytes, byte_vocab_size, path.string());
}

std::optional<DataFormat> parse_data_format(std::string_view name) {
  if (name == "bytes") return DataFormat::bytes;
  if (name == "uint16") return DataFormat::uint16;
  if (name == "int32") return DataFormat::int32;
  if (name == "text") return DataFormat::text;
  if (name == "jsonl") return DataFormat::jsonl;
  return std::nullopt;
}

void require_data_vocab(const GptConfig& config, DataFormat format) {
  LF_CHECK(format != DataFormat::bytes || config.vocab_size == byte_vocab_size, ErrorKind::cannot_meet,
           "the model's vocab_size is ", config.vocab_size, ": byte data (one token per byte) needs vocab_size ",
           byte_vocab_size, "; put the model's tokenizer.json in its directory (text data is then tokenized "
           "with it), or give token ids with `data_format` uint16 or int32");
}

namespace {

// Little-endian `Word` ids; the host's byte order is checked at compile time.
template <class Word>
Tokens decode_ids(std::string_view bytes) {
  static_assert(std::endian::native == std::endian::little, "token-id files are read as little-endian");
  Tokens tokens(bytes.size() / sizeof(Word));
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    Word id;
    std::memcpy(&id, bytes.data() + i * sizeof(Word), sizeof(Word));
    tokens[i] = static_cast<std::int32_t>(id);
  }
  return tokens;
}

}  // namespace

Tokens parse_token_ids(std::string_view bytes, DataFormat format, std::int64_t vocab_size, const std::string& origin) {
  LF_CHECK(!bytes.empty(), bad, origin, ": the data file is empty");
  LF_ASSERT(format != DataFormat::text && format != DataFormat::jsonl);  // read_text_tokens, prepare_instruction_data
  if (format == DataFormat::bytes) return byte_tokens(bytes);
  const std::size_t width = format == DataFormat::uint16 ? 2 : 4;
  LF_CHECK(bytes.size() % width == 0, bad, origin, ": ", bytes.size(), " bytes, not a whole number of ", width,
           "-byte token ids (`data_format` ", format == DataFormat::uint16 ? "uint16" : "int32", ")");
  const Tokens tokens = format == DataFormat::uint16 ? decode_ids<std::uint16_t>(bytes) : decode_ids<std::int32_t>(bytes);
  const auto outside = std::find_if(tokens.begin(), tokens.end(), [&](std::int32_t t) { return t < 0 || t >= vocab_size; });
  LF_CHECK(outside == tokens.end(), bad, origin, ": token ", outside - tokens.begin(), " is ", *outside,
           ", outside the model's vocabulary [0, ", vocab_size, ")");
  return tokens;
}

Tokens read_token_file(const std::filesystem::path& path, DataFormat format, std::int64_t vocab_size) {
  return parse_token_ids(read_text_file(path, max_data_bytes), format, vocab_size, path.string());
}

DataFingerprint fingerprint(const Tokens& tokens) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::int32_t t : tokens)
    for (int byte = 0; byte < 4; ++byte) {
      h ^= (static_cast<std::uint32_t>(t) >> (8 * byte)) & 0xffu;
      h *= 0x100000001b3ull;
    }
  return {tokens.size(), h};
}

TrainValSplit split_train_val(const Tokens& tokens, double val_fraction) {
  LF_CHECK(std::isfinite(val_fraction) && val_fraction >= 0 && val_fraction < 1, ErrorKind::usage,
           "`val_fraction` must be in [0, 1), got ", val_fraction);
  const auto cut = static_cast<std::size_t>(std::floor(static_cast<double>(tokens.size()) * (1.0 - val_fraction)));
  return {Tokens(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(cut)),
          Tokens(tokens.begin() + static_cast<std::ptrdiff_t>(cut), tokens.end())};
}

std::uint64_t splitmix64(std::uint64_t x) {
  std::uint64_t z = x + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

TokenBatch sample_windows(const Tokens& tokens, std::int64_t seq_len, std::int64_t batch, std::uint64_t seed,
                          std::int64_t step, std::int64_t micro) {
  const auto n = static_cast<std::int64_t>(tokens.size());
  LF_CHECK(seq_len >= 1 && n >= seq_len + 1, bad, "the training data has ", n,
           " tokens, fewer than one window of `seq_len` + 1 = ", seq_len + 1);
  const auto starts = static_cast<std::uint64_t>(n - seq_len);
  const std::uint64_t key = splitmix64(splitmix64(splitmix64(seed) ^ static_cast<std::uint64_t>(step)) ^
                                       static_cast<std::uint64_t>(micro));
  TokenBatch out{batch, seq_len, {}};
  out.tokens.reserve(static_cast<std::size_t>(batch * (seq_len + 1)));
  for (std::int64_t w = 0; w < batch; ++w) {
    const auto start = static_cast<std::ptrdiff_t>(splitmix64(key ^ static_cast<std::uint64_t>(w)) % starts);
    out.tokens.insert(out.tokens.end(), tokens.begin() + start, tokens.begin() + start + seq_len + 1);
  }
  return out;
}

std::int64_t eval_window_count(std::int64_t tokens, std::int64_t seq_len) {
  LF_ASSERT(seq_len >= 1);
  return tokens >= 1 ? (tokens - 1) / seq_len : 0;
}

TokenBatch eval_windows(const Tokens& tokens, std::int64_t seq_len, std::int64_t first, std::int64_t count) {
  LF_ASSERT(first >= 0 && count >= 0 && first + count <= eval_window_count(static_cast<std::int64_t>(tokens.size()), seq_len));
  TokenBatch out{count, seq_len, {}};
  out.tokens.reserve(static_cast<std::size_t>(count * (seq_len + 1)));
  for (std::int64_t w = first; w < first + count; ++w) {
    const auto start = static_cast<std::ptrdiff_t>(w * seq_len);
    out.tokens.insert(out.tokens.end(), tokens.begin() + start, tokens.begin() + start + seq_len + 1);
  }
  return out;
}

namespace {

template <class W, class T>
EvalResult evaluate_any(const W& weights, const GptLora<T>* lora, const Tokens& tokens, std::int64_t seq_len,
                        std::int64_t max_windows, std::int64_t batch) {
  LF_CHECK(seq_len >= 1 && seq_len <= weights.config.n_positions, ErrorKind::usage, "`seq_len` must be in [1, ",
           weights.config.n_positions, "] (the model's n_positions), got ", seq_len);
  std::int64_t windows = eval_window_count(static_cast<std::int64_t>(tokens.size()), seq_len);
  LF_CHECK(windows > 0, bad, tokens.size(), " tokens hold no complete window of `seq_len` + 1 = ", seq_len + 1,
           " tokens");
  if (max_windows > 0) windows = std::min(windows, max_windows);
  double sum = 0;
  for (std::int64_t first = 0; first < windows; first += batch) {
    const TokenBatch b = eval_windows(tokens, seq_len, first, std::min(batch, windows - first));
    sum += model_loss(weights, lora, b) * static_cast<double>(b.predicted());
  }
  const std::int64_t predicted = windows * seq_len;
  return {sum / static_cast<double>(predicted), predicted};
}

}  // namespace

template <class T>
EvalResult evaluate_windows(const GptWeights<T>& weights, const GptLora<T>* lora, const Tokens& tokens,
                            std::int64_t seq_len, std::int64_t max_windows, std::int64_t batch) {
  return evaluate_any(weights, lora, tokens, seq_len, max_windows, batch);
}

template <class T>
EvalResult evaluate_windows(const LlamaWeights<T>& weights, const GptLora<T>* lora, const Tokens& tokens,
                            std::int64_t seq_len, std::int64_t max_windows, std::int64_t batch) {
  return evaluate_any(weights, lora, tokens, seq_len, max_windows, batch);
}

template EvalResult evaluate_windows<float>(const LlamaWeights<float>&, const GptLora<float>*, const Tokens&,
                                            std::int64_t, std::int64_t, std::int64_t);
template EvalResult evaluate_windows<double>(const LlamaWeights<double>&, const GptLora<double>*, const Tokens&,
                                             std::int64_t, std::int64_t, std::int64_t);
template EvalResult evaluate_windows<float>(const GptWeights<float>&, const GptLora<float>*, const Tokens&,
                                            std::int64_t, std::int64_t, std::int64_t);
template EvalResult evaluate_windows<double>(const GptWeights<double>&, const GptLora<double>*, const Tokens&,
                                             std::int64_t, std::int64_t, std::int64_t);

}  // namespace lorafast
