// Byte tokens, token-id files, the train / validation split, the counter-based window sampler and
// the evaluation windows of `lorafast eval` (INTERFACE.md).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>

#include "lorafast/gpt_generate.hpp"
#include "lorafast/train_data.hpp"
#include "support/tiny_gpt.hpp"

namespace lorafast {
namespace {

Tokens iota_tokens(std::int64_t n, std::int32_t modulo = 1 << 30) {
  Tokens t(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) t[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i % modulo);
  return t;
}

TEST(ByteTokens, OneTokenPerByteUnsigned) {
  EXPECT_EQ(byte_tokens(std::string("a\xff\n\0b", 5)), (Tokens{97, 255, 10, 0, 98}));
}

TEST(ByteTokens, FileErrorsNameTheFile) {
  const auto dir = std::filesystem::temp_directory_path() / "lorafast_test_train_data";
  std::filesystem::create_directories(dir);
  const auto empty = dir / "empty.txt";
  std::ofstream(empty).close();
  try {
    read_byte_tokens(empty);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::bad_input);
    EXPECT_NE(std::string(e.what()).find("empty.txt: the data file is empty"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_byte_tokens(dir / "missing.txt"), Error);
  std::ofstream(dir / "abc.txt") << "abc";
  EXPECT_EQ(read_byte_tokens(dir / "abc.txt"), (Tokens{97, 98, 99}));
  std::filesystem::remove_all(dir);
}

TEST(ByteTokens, ByteVocabularyRequired) {
  GptConfig c = testing::tiny_config({});
  c.vocab_size = 300;
  try {
    require_byte_vocab(c);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::cannot_meet);
    EXPECT_NE(std::string(e.what()).find("tokenizer"), std::string::npos);
  }
  c.vocab_size = 256;
  EXPECT_NO_THROW(require_byte_vocab(c));
}

// Writes `bytes` to a fresh file in a test directory and returns its path.
std::filesystem::path write_file(const std::string& name, const std::string& bytes) {
  const auto dir = std::filesystem::temp_directory_path() / "lorafast_test_token_file";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
  return dir / name;
}

// The kind and message of the error `f` throws.
template <class F>
std::pair<ErrorKind, std::string> error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return {e.kind(), e.what()};
  }
  ADD_FAILURE() << "no error";
  return {};
}

TEST(TokenFile, LittleEndianIds) {
  EXPECT_EQ(read_token_file(write_file("u16.bin", std::string("\x01\x00\xff\xff\x34\x12", 6)), DataFormat::uint16,
                            65536),
            (Tokens{1, 65535, 0x1234}));
  EXPECT_EQ(read_token_file(write_file("i32.bin", std::string("\x50\xc4\x00\x00\x00\x00\x00\x00", 8)),
                            DataFormat::int32, 50257),
            (Tokens{50256, 0}));  // 0xc450: GPT-2's last id
  EXPECT_EQ(read_token_file(write_file("bytes.txt", "ab"), DataFormat::bytes, 256), (Tokens{97, 98}));
}

TEST(TokenFile, BadFilesNameTheFileAndToken) {
  const auto [kind, what] = error_of([] { read_token_file(write_file("big.bin", std::string("\x02\x00\x2c\x01", 4)),
                                                          DataFormat::uint16, 300); });
  EXPECT_EQ(kind, ErrorKind::bad_input);
  EXPECT_NE(what.find("big.bin: token 1 is 300, outside the model's vocabulary [0, 300)"), std::string::npos) << what;
  const auto [odd_kind, odd] = error_of([] { read_token_file(write_file("odd.bin", "abc"), DataFormat::uint16, 300); });
  EXPECT_EQ(odd_kind, ErrorKind::bad_input);
  EXPECT_NE(odd.find("odd.bin: 3 bytes, not a whole number of 2-byte token ids"), std::string::npos) << odd;
  EXPECT_NE(error_of([] { read_token_file(write_file("odd32.bin", "abcdef"), DataFormat::int32, 300); })
                .second.find("4-byte"),
            std::string::npos);
  EXPECT_NE(error_of([] { read_token_file(write_file("neg.bin", std::string("\xff\xff\xff\xff", 4)),
                                          DataFormat::int32, 300); })
                .second.find("token 0 is -1"),
            std::string::npos);
  EXPECT_NE(error_of([] { read_token_file(write_file("empty.bin", ""), DataFormat::uint16, 300); })
                .second.find("empty.bin: the data file is empty"),
            std::string::npos);
}

TEST(TokenFile, ByteDataNeedsTheByteVocabulary) {
  GptConfig c = testing::tiny_config({});
  c.vocab_size = 50257;
  const auto [kind, what] = error_of([&] { require_data_vocab(c, DataFormat::bytes); });
  EXPECT_EQ(kind, ErrorKind::cannot_meet);
  EXPECT_NE(what.find("`data_format` uint16 or int32"), std::string::npos) << what;
  EXPECT_NO_THROW(require_data_vocab(c, DataFormat::uint16));
  EXPECT_NO_THROW(require_data_vocab(c, DataFormat::int32));
  c.vocab_size = 256;
  EXPECT_NO_THROW(require_data_vocab(c, DataFormat::bytes));
}

TEST(TokenFile, FormatNames) {
  EXPECT_EQ(parse_data_format("bytes"), DataFormat::bytes);
  EXPECT_EQ(parse_data_format("uint16"), DataFormat::uint16);
  EXPECT_EQ(parse_data_format("int32"), DataFormat::int32);
  EXPECT_EQ(parse_data_format("u16"), std::nullopt);
}

TEST(Split, FloorOfTrainFraction) {
  const Tokens t = iota_tokens(10);
  auto s = split_train_val(t, 0.25);  // floor(10 * 0.75) = 7
  EXPECT_EQ(s.train, Tokens(t.begin(), t.begin() + 7));
  EXPECT_EQ(s.val, Tokens(t.begin() + 7, t.end()));
  s = split_train_val(t, 0.0);
  EXPECT_EQ(s.train, t);
  EXPECT_TRUE(s.val.empty());
  EXPECT_THROW(split_train_val(t, 1.0), Error);
}

TEST(Fingerprint, DependsOnEveryToken) {
  const Tokens a = iota_tokens(100, 256);
  Tokens b = a;
  b[57] ^= 1;
  EXPECT_EQ(fingerprint(a), fingerprint(a));
  EXPECT_NE(fingerprint(a).hash, fingerprint(b).hash);
  EXPECT_EQ(fingerprint(a).tokens, 100u);
}

TEST(Sampler, SplitMix64KnownValues) {
  // The first outputs of the SplitMix64 generator seeded with 0 (Vigna's reference).
  SplitMix64Rng rng(0);
  EXPECT_EQ(rng.next(), 0xe220a8397b1dcdafull);
  EXPECT_EQ(rng.next(), 0x6e789e6aa1b965f4ull);
  EXPECT_EQ(splitmix64(0), 0xe220a8397b1dcdafull);
}

TEST(Sampler, WindowsAreContiguousDeterministicAndCounterBased) {
  const Tokens t = iota_tokens(50);
  const std::int64_t seq = 7;
  const auto a = sample_windows(t, seq, 4, 123, 5, 0);
  EXPECT_EQ(a.batch, 4);
  EXPECT_EQ(a.seq_len, seq);
  ASSERT_EQ(a.tokens.size(), 4u * 8u);
  std::set<std::int32_t> starts;
  for (std::int64_t n = 0; n < 4; ++n) {
    const std::int32_t s = a.at(n, 0);
    EXPECT_LE(s, 50 - 8);
    for (std::int64_t i = 0; i <= seq; ++i) EXPECT_EQ(a.at(n, i), s + i);
    // The start is mix(key ^ n) % (n_tokens - T), key = mix(mix(mix(seed) ^ step) ^ micro).
    const std::uint64_t key = splitmix64(splitmix64(splitmix64(123) ^ 5) ^ 0);
    EXPECT_EQ(static_cast<std::uint64_t>(s), splitmix64(key ^ static_cast<std::uint64_t>(n)) % 43);
    starts.insert(s);
  }
  EXPECT_GT(starts.size(), 1u);
  EXPECT_EQ(sample_windows(t, seq, 4, 123, 5, 0).tokens, a.tokens);
  EXPECT_NE(sample_windows(t, seq, 4, 123, 6, 0).tokens, a.tokens);
  EXPECT_NE(sample_windows(t, seq, 4, 123, 5, 1).tokens, a.tokens);
  EXPECT_NE(sample_windows(t, seq, 4, 124, 5, 0).tokens, a.tokens);
  // The only window of a text of exactly T + 1 tokens.
  EXPECT_EQ(sample_windows(iota_tokens(8), seq, 2, 1, 1, 0).tokens, (Tokens{0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_THROW(sample_windows(iota_tokens(7), seq, 1, 1, 1, 0), Error);
}

TEST(EvalWindows, StrideTDropsTheIncompleteWindow) {
  EXPECT_EQ(eval_window_count(0, 4), 0);
  EXPECT_EQ(eval_window_count(4, 4), 0);
  EXPECT_EQ(eval_window_count(5, 4), 1);
  EXPECT_EQ(eval_window_count(8, 4), 1);
  EXPECT_EQ(eval_window_count(9, 4), 2);
  EXPECT_EQ(eval_window_count(10, 1), 9);
  const Tokens t = iota_tokens(11);
  const auto w = eval_windows(t, 4, 0, 2);  // token 10 is in no complete window
  EXPECT_EQ(w.tokens, (Tokens{0, 1, 2, 3, 4, 4, 5, 6, 7, 8}));
  EXPECT_EQ(eval_windows(t, 4, 1, 1).tokens, (Tokens{4, 5, 6, 7, 8}));
}

TEST(EvalWindows, BatchedMeanEqualsPerWindowMean) {
  const testing::TinyGptSpec spec{2, 2, 8, 11, 9, 3};
  const auto model = gpt_weights_from_tensors<double>(testing::tiny_config(spec), testing::tiny_model_tensors(spec, true), "tiny");
  LoraConfig lc;
  lc.rank = 2;
  const auto lora = testing::random_lora<double>(model.config, lc, 4);
  const auto tokens = testing::random_tokens(1, 40, spec.vocab, 5).tokens;  // 41 tokens, T = 6: 6 windows
  double sum = 0;
  for (std::int64_t w = 0; w < 6; ++w) sum += gpt_loss(model, &lora, eval_windows(tokens, 6, w, 1));
  const auto r = evaluate_windows(model, &lora, tokens, 6, 0, 4);
  EXPECT_EQ(r.tokens, 36);
  // Same per-window sums in another grouping: a few roundings of O(1) values.
  EXPECT_NEAR(r.loss, sum / 6, 1e-13);
  const auto first2 = evaluate_windows(model, &lora, tokens, 6, 2, 4);
  EXPECT_EQ(first2.tokens, 12);
  EXPECT_NEAR(first2.loss, gpt_loss(model, &lora, eval_windows(tokens, 6, 0, 2)), 1e-13);
  EXPECT_THROW(evaluate_windows(model, &lora, Tokens(6, 1), 6), Error);  // no complete window
  EXPECT_THROW(evaluate_windows(model, &lora, tokens, 10), Error);      // beyond n_positions
}

}  // namespace
}  // namespace lorafast
