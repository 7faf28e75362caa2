// The tokenizer on hand-written tokenizer.json files: the BPE model's rules
// (merge order, both merge spellings, byte_fallback, unk and fuse_unk, prefix and
// suffix, ignore_merges), added tokens, decoders, UTF-8 replacement and the id file.
// Expected values come from the rules as the tokenizers library documents them, not
// from our output; test_tokenizer_vs_hf.py checks real tokenizers against the library.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "lorafast/tokenizer.hpp"
#include "support/bad_input.hpp"

namespace lorafast {
namespace {

using nlohmann::json;
using Ids = std::vector<std::int32_t>;

// A tokenizer.json with `model` fields over `vocab` and `merges`, plus `extra` top-level fields.
std::string tokenizer_json(const json& vocab, const json& merges, const json& model = json::object(),
                           const json& extra = json::object()) {
  json doc = {{"version", "1.0"}, {"added_tokens", json::array()}, {"normalizer", nullptr},
              {"pre_tokenizer", nullptr}, {"decoder", nullptr},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
  for (const auto& [k, v] : model.items()) doc["model"][k] = v;
  for (const auto& [k, v] : extra.items()) doc[k] = v;
  return doc.dump();
}

Tokenizer load(const std::string& text) { return Tokenizer::from_json(text, "tok.json"); }

TEST(TokenizerUtf8, ReplacesMaximalSubparts) {
  // Unicode 15 section 3.9, "U+FFFD Substitution of Maximal Subparts", Table 3-8.
  EXPECT_EQ(replace_invalid_utf8("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
            "a\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd");
  EXPECT_EQ(replace_invalid_utf8("\xC0\xAF \xED\xA0\x80 \xF4\x90\x80\x80"),
            "\uFFFD\uFFFD \uFFFD\uFFFD\uFFFD \uFFFD\uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(replace_invalid_utf8("ok \xE2\x82\xAC \xF0\x9F\x98"), "ok \u20AC \uFFFD");
}

TEST(TokenizerBpe, MergesInBothSpellingsLowestRankFirst) {
  const json vocab = {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}};
  // "a b" outranks "b c": abc = (ab)c through the merge "ab c".
  const Tokenizer strings = load(tokenizer_json(vocab, {"a b", "b c", "ab c"}));
  const Tokenizer pairs = load(tokenizer_json(vocab, json::array({{"a", "b"}, {"b", "c"}, {"ab", "c"}})));
  EXPECT_EQ(strings.encode("abcab"), (Ids{5, 3}));
  EXPECT_EQ(pairs.encode("abcab"), (Ids{5, 3}));
  // With "b c" first, "a bc" is not a rule: a and bc stay apart.
  EXPECT_EQ(load(tokenizer_json(vocab, {"b c", "a b", "ab c"})).encode("abc"), (Ids{0, 4}));
  // No decoder: tokens joined by spaces.
  EXPECT_EQ(strings.decode(Ids{5, 3, 0}), "abc ab a");
}

TEST(TokenizerBpe, EqualRanksMergeLeftmostFirst) {
  const Tokenizer t = load(tokenizer_json({{"a", 0}, {"aa", 1}}, {"a a"}));
  EXPECT_EQ(t.encode("aaa"), (Ids{1, 0}));
  EXPECT_EQ(t.encode("aaaaa"), (Ids{1, 1, 0}));
}

TEST(TokenizerBpe, ByteFallbackUnkAndFuseUnk) {
  json vocab = {{"<unk>", 0}, {"a", 1}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = 2 + b;
  }
  const Tokenizer fallback = load(tokenizer_json(vocab, json::array(), {{"byte_fallback", true}, {"unk_token", "<unk>"}}));
  EXPECT_EQ(fallback.encode("a\u00e9"), (Ids{1, 2 + 0xC3, 2 + 0xA9}));
  const json small = {{"<unk>", 0}, {"a", 1}};
  EXPECT_EQ(load(tokenizer_json(small, json::array(), {{"unk_token", "<unk>"}})).encode("xya"), (Ids{0, 0, 1}));
  EXPECT_EQ(load(tokenizer_json(small, json::array(), {{"unk_token", "<unk>"}, {"fuse_unk", true}})).encode("xya"),
            (Ids{0, 1}));
  // Without unk_token the library drops unknown characters.
  EXPECT_EQ(load(tokenizer_json(small, json::array())).encode("xya"), (Ids{1}));
  // An unk_token missing from the vocabulary fails when it is needed, naming the file.
  const Tokenizer broken = load(tokenizer_json(small, json::array(), {{"unk_token", "<nope>"}}));
  EXPECT_MENTIONS(testing::bad_input_message([&] { broken.encode("x"); }), "tok.json");
}

TEST(TokenizerBpe, PrefixSuffixAndIgnoreMerges) {
  const json vocab = {{"a", 0}, {"##b", 1}, {"##c", 2}, {"ab", 3}, {"ab##c", 4}, {"abc", 5}};
  // The merge "a ##b" makes "ab" (the prefix comes off the right part).
  const Tokenizer prefixed = load(tokenizer_json(vocab, {"a ##b"}, {{"continuing_subword_prefix", "##"}}));
  EXPECT_EQ(prefixed.encode("abc"), (Ids{3, 2}));
  const json suffix_vocab = {{"a", 0}, {"b</w>", 1}, {"ab</w>", 2}};
  EXPECT_EQ(load(tokenizer_json(suffix_vocab, {"a b</w>"}, {{"end_of_word_suffix", "</w>"}})).encode("ab"), (Ids{2}));
  // ignore_merges: a word in the vocabulary is one token even without a merge path.
  const json whole = {{"a", 0}, {"b", 1}, {"c", 2}, {"abc", 3}};
  EXPECT_EQ(load(tokenizer_json(whole, json::array())).encode("abc"), (Ids{0, 1, 2}));
  EXPECT_EQ(load(tokenizer_json(whole, json::array(), {{"ignore_merges", true}})).encode("abc"), (Ids{3}));
}

TEST(TokenizerAddedTokens, LongestFirstStripAndSingleWord) {
  const json vocab = {{"a", 0}, {" ", 1}, {"b", 2}};
  const json added = json::array({
      {{"id", 3}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
      {{"id", 4}, {"content", "<s><s>"}, {"special", true}, {"normalized", false}},
      {{"id", 5}, {"content", "m"}, {"lstrip", true}, {"rstrip", true}, {"normalized", false}},
      {{"id", 6}, {"content", "ab"}, {"single_word", true}, {"normalized", false}},
  });
  const Tokenizer t = load(tokenizer_json(vocab, json::array(), {}, {{"added_tokens", added}}));
  EXPECT_EQ(t.encode("<s><s><s>a"), (Ids{4, 3, 0}));
  EXPECT_EQ(t.encode("a  m  b"), (Ids{0, 5, 2}));     // the spaces around m are its own
  EXPECT_EQ(t.encode("ab aab ab"), (Ids{6, 1, 0, 0, 2, 1, 6}));  // "aab" holds no single-word "ab"
  EXPECT_EQ(t.decode(Ids{4, 0, 5}), "<s><s> a m");
  EXPECT_EQ(t.vocab_size(), 7);
  EXPECT_EQ(t.token_id("<s>"), 3);
}

TEST(TokenizerAddedTokens, NormalizedTokensMatchTheirNormalizedForm) {
  const json vocab = {{"\u2581", 0}, {"x", 1}};
  const json added = json::array({{{"id", 2}, {"content", "x x"}, {"normalized", true}}});
  const json normalizer = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}};
  const Tokenizer t =
      load(tokenizer_json(vocab, json::array(), {}, {{"added_tokens", added}, {"normalizer", normalizer}}));
  EXPECT_EQ(t.encode("x x x"), (Ids{2, 0, 1}));  // "x▁x" found in the normalized "x▁x▁x"
}

TEST(TokenizerAddedTokens, FileIdMustBeTheLibrarysId) {
  const json added = json::array({{{"id", 9}, {"content", "<new>"}, {"special", true}}});
  const std::string message = testing::bad_input_message(
      [&] { load(tokenizer_json({{"a", 0}}, json::array(), {}, {{"added_tokens", added}})); });
  EXPECT_MENTIONS(message, "tok.json");
  EXPECT_MENTIONS(message, "<new>");
}

// The library's own example (SplitDelimiterBehavior docs): "the-final--countdown" split at "-".
TEST(TokenizerPreTokenizer, SplitBehaviors) {
  json vocab;
  for (const char c : std::string("thefinalcoutdw-"))
    if (!vocab.contains(std::string(1, c))) vocab[std::string(1, c)] = static_cast<int>(vocab.size());
  const auto pieces = [&](const std::string& behavior) {
    // Merges make each piece one token when it is whole: all tokens exist as words.
    json v = vocab;
    for (const char* w : {"the", "final", "countdown", "-", "--", "the-", "final-", "-final", "-countdown"})
      if (!v.contains(w)) v[w] = static_cast<int>(v.size());
    const json pre = {{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", false}};
    const Tokenizer t = load(tokenizer_json(v, json::array(), {{"ignore_merges", true}}, {{"pre_tokenizer", pre}}));
    std::vector<std::string> words;
    for (const std::int32_t id : t.encode("the-final--countdown")) words.push_back(t.decode(Ids{id}));
    return words;
  };
  using Words = std::vector<std::string>;
  EXPECT_EQ(pieces("Removed"), (Words{"the", "final", "countdown"}));
  EXPECT_EQ(pieces("Isolated"), (Words{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(pieces("MergedWithPrevious"), (Words{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(pieces("MergedWithNext"), (Words{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(pieces("Contiguous"), (Words{"the", "-", "final", "--", "countdown"}));
}

TEST(TokenizerDecoder, ByteFallbackFuseStrip) {
  const json vocab = {{"\u2581hi", 0}, {"<0xE2>", 1}, {"<0x82>", 2}, {"<0xAC>", 3}, {"<0xFF>", 4}};
  const json decoder = {{"type", "Sequence"}, {"decoders", json::array({
      {{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}}, {{"type", "ByteFallback"}},
      {{"type", "Fuse"}}, {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  const Tokenizer t = load(tokenizer_json(vocab, json::array(), {}, {{"decoder", decoder}}));
  EXPECT_EQ(t.decode(Ids{0, 1, 2, 3, 0}), "hi\u20AC hi");
  EXPECT_EQ(t.decode(Ids{4, 1, 0}), "\uFFFD\uFFFD hi");  // a run of bad bytes: one U+FFFD per byte
}

TEST(TokenizerDecoder, UnknownIdNamesTheId) {
  const Tokenizer t = load(tokenizer_json({{"a", 0}}, json::array()));
  const std::string message = testing::bad_input_message([&] { t.decode(Ids{0, 7}); });
  EXPECT_MENTIONS(message, "id 7");
  EXPECT_MENTIONS(message, "tok.json");
}

TEST(TokenizerHostile, EveryBrokenFileIsBadInputNamingIt) {
  const json vocab = {{"a", 0}, {"b", 1}, {"ab", 2}};
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"unknown model", tokenizer_json(vocab, {"a b"}, {{"type", "WordPiece"}})},
      {"merge token", tokenizer_json(vocab, {"a zz"})},
      {"merged token", tokenizer_json({{"a", 0}, {"b", 1}}, {"a b"})},
      {"merge spelling", tokenizer_json(vocab, {"a b c"})},
      {"duplicate id", tokenizer_json({{"a", 0}, {"b", 0}}, json::array())},
      {"huge id", tokenizer_json({{"a", 1ll << 40}}, json::array())},
      {"sparse ids", tokenizer_json({{"a", 5000000}}, json::array())},
      {"string id", tokenizer_json({{"a", "0"}}, json::array())},
      {"missing vocab", json({{"model", {{"type", "BPE"}, {"merges", json::array()}}}}).dump()},
      {"missing model", json({{"normalizer", nullptr}}).dump()},
      {"bad regex", tokenizer_json(vocab, json::array(), {},
                                   {{"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"Regex", "(a"}}},
                                                       {"behavior", "Isolated"}, {"invert", false}}}})},
      {"bad behavior", tokenizer_json(vocab, json::array(), {},
                                      {{"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"String", "a"}}},
                                                          {"behavior", "Sideways"}, {"invert", false}}}})},
      {"unknown normalizer", tokenizer_json(vocab, json::array(), {}, {{"normalizer", {{"type", "Precompiled"}}}})},
      {"unknown decoder", tokenizer_json(vocab, json::array(), {}, {{"decoder", {{"type", "CTC"}}}})},
      {"metaspace scheme", tokenizer_json(vocab, json::array(), {},
                                          {{"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", "_"},
                                                              {"prepend_scheme", "sometimes"}}}})},
      {"dropout", tokenizer_json(vocab, json::array(), {{"dropout", 0.5}})},
      {"deep", std::string(10000, '[') + std::string(10000, ']')},
      {"not an object", "[1, 2]"},
  };
  for (const auto& [name, text] : cases) {
    SCOPED_TRACE(name);
    EXPECT_MENTIONS(testing::bad_input_message([&] { load(text); }), "tok.json");
  }
}

TEST(TokenizerIdFile, LinesAndJson) {
  EXPECT_EQ(parse_id_list("1\n 2 \r\n\n3", "ids"), (Ids{1, 2, 3}));
  EXPECT_EQ(parse_id_list(" {\"ids\": [4, 5]}", "ids"), (Ids{4, 5}));
  EXPECT_MENTIONS(testing::bad_input_message([] { parse_id_list("1\nx\n", "ids.txt"); }), "ids.txt: line 2");
  EXPECT_MENTIONS(testing::bad_input_message([] { parse_id_list("-1", "ids.txt"); }), "ids.txt");
  EXPECT_MENTIONS(testing::bad_input_message([] { parse_id_list("{\"ids\": [1.5]}", "ids.txt"); }), "ids.txt");
}

TEST(TokenizerConfig, BosAndEosNameTokens) {
  const json added = json::array({{{"id", 1}, {"content", "<s>"}, {"special", true}},
                                  {{"id", 2}, {"content", "</s>"}, {"special", true}}});
  Tokenizer t = load(tokenizer_json({{"a", 0}}, json::array(), {}, {{"added_tokens", added}}));
  t.read_config(R"({"bos_token": "<s>", "eos_token": {"content": "</s>", "lstrip": false}})", "config.json");
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_MENTIONS(testing::bad_input_message([&] { t.read_config(R"({"bos_token": "<x>"})", "config.json"); }),
                  "config.json");
}

// The post-processor's special tokens around one sequence, as the library's
// encode(text, add_special_tokens=True): a Sequence applies its processors in turn,
// each wrapping what the previous ones made.
TEST(TokenizerPostProcessor, SpecialTokensAroundOneSequence) {
  const json vocab = {{"a", 0}, {"b", 1}, {"<s>", 2}, {"</s>", 3}, {"[X]", 4}};
  const auto single = [](const char* special) {
    return json{{"type", "TemplateProcessing"},
                {"single", json::array({{{"SpecialToken", {{"id", special}, {"type_id", 0}}}},
                                        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                        {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}})},
                {"special_tokens", {{special, {{"id", special}, {"ids", {2}}, {"tokens", {special}}}},
                                    {"</s>", {{"id", "</s>"}, {"ids", {3}}, {"tokens", {"</s>"}}}}}}};
  };
  const json bert = {{"type", "BertProcessing"}, {"cls", {"[X]", 4}}, {"sep", {"</s>", 3}}};
  const json sequence = {{"type", "Sequence"},
                         {"processors", json::array({{{"type", "ByteLevel"}}, single("<s>"), bert})}};
  EXPECT_EQ(load(tokenizer_json(vocab, json::array(), {}, {{"post_processor", single("<s>")}}))
                .encode_with_special_tokens("ab"),
            (Ids{2, 0, 1, 3}));
  const Tokenizer t = load(tokenizer_json(vocab, json::array(), {}, {{"post_processor", sequence}}));
  EXPECT_EQ(t.encode_with_special_tokens("ab"), (Ids{4, 2, 0, 1, 3, 3}));
  EXPECT_EQ(t.encode("ab"), (Ids{0, 1}));
  EXPECT_EQ(load(tokenizer_json(vocab, json::array())).encode_with_special_tokens("ab"), (Ids{0, 1}));
  try {
    load(tokenizer_json(vocab, json::array(), {}, {{"post_processor", {{"type", "Other"}}}})).encode_with_special_tokens("a");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::cannot_meet);
    EXPECT_MENTIONS(std::string(e.what()), "post_processor 'Other' is not supported");
  }
  json bad_id = single("<s>");
  bad_id["special_tokens"]["<s>"]["ids"] = {9};
  EXPECT_MENTIONS(testing::bad_input_message(
                      [&] { load(tokenizer_json(vocab, json::array(), {}, {{"post_processor", bad_id}})); }),
                  "post_processor: id 9 is not a token");
}

}  // namespace
}  // namespace lorafast
