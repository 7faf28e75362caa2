// Instruction data: the JSONL reader's formats, checks and limits, and the labels of
// prepare_instruction_data on a character-level tokenizer whose ids are written out
// by hand (a = 0, ..., z = 25, then ' ', '>', '\n'; the eos "<e>" is 29), with a
// template marking the assistant's text. test_sft_prepare_vs_trl.py checks the same
// against TRL's SFTTrainer on a real BPE tokenizer and TRL's templates.
#include <gtest/gtest.h>

#include <fstream>

#include "lorafast/instruction_data.hpp"
#include "lorafast/sft_rows.hpp"
#include "support/bad_input.hpp"
#include "support/scratch_files.hpp"

namespace lorafast {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;
using Ids = std::vector<std::int32_t>;
constexpr std::int32_t eos = 29, no = ignore_label;
constexpr std::int32_t id(char c) { return c == ' ' ? 26 : c == '>' ? 27 : c == '\n' ? 28 : c - 'a'; }

InstructionExample read_one(const std::string& line) {
  InstructionFileReader reader("f.jsonl");
  auto ex = reader.read_line(line, 7);
  EXPECT_TRUE(ex.has_value());
  return std::move(*ex);
}

TEST(InstructionReader, Formats) {
  const InstructionExample text = read_one(R"({"text": "hi", "id": 3})");
  EXPECT_EQ(text.format, InstructionFormat::text);
  EXPECT_EQ(text.input, "hi");
  EXPECT_EQ(text.origin, "f.jsonl:7");
  const InstructionExample pc = read_one(R"({"prompt": "a", "completion": "b"})");
  EXPECT_EQ(pc.format, InstructionFormat::prompt_completion);
  EXPECT_TRUE(pc.prompt_completion() && !pc.conversational());
  const InstructionExample chat_pc = read_one(
      R"({"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "assistant", "content": "b"}]})");
  EXPECT_EQ(chat_pc.format, InstructionFormat::conversational_prompt_completion);
  EXPECT_TRUE(chat_pc.prompt_completion() && chat_pc.conversational());
  const InstructionExample messages =
      read_one(R"({"messages": [{"role": "user", "content": null}], "tools": "[{\"name\": \"f\"}]"})");
  EXPECT_EQ(messages.format, InstructionFormat::messages);
  EXPECT_EQ(messages.tools, ordered_json::parse(R"([{"name": "f"}])"));
}

TEST(InstructionReader, ShareGptSpeakersAsRoles) {
  const InstructionExample ex = read_one(
      R"({"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q", "x": 1},
          {"from": "gpt", "value": "a"}, {"from": "tool", "value": "t"}]})");
  EXPECT_EQ(ex.format, InstructionFormat::sharegpt);
  // TRL's key order: the other keys, then role and content.
  EXPECT_EQ(ex.input.dump(), ordered_json::parse(R"([{"role": "system", "content": "s"},
      {"x": 1, "role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
      {"role": "tool", "content": "t"}])").dump());
}

TEST(InstructionReader, BadLinesNameFileAndLine) {
  const auto message = [](const std::string& line) {
    return testing::bad_input_message([&] { read_one(line); });
  };
  for (const char* line : {"{", "[]", R"({"text": 1})", R"({"messages": [{"content": "x"}]})",
                           R"({"messages": [{"role": "u", "content": 2}]})", R"({"messages": []})",
                           R"({"conversations": [{"from": "human"}]})", R"({"prompt": "a"})",
                           R"({"prompt": "a", "completion": []})", R"({"text": "a", "messages": []})", R"({"q": 1})",
                           R"({"messages": [{"role": "u"}], "tools": 5})"}) {
    const std::string m = message(line);
    EXPECT_EQ(m.rfind("f.jsonl:7: ", 0), 0u) << line << " -> " << m;
  }
  EXPECT_MENTIONS(message(R"({"messages": [{"role": "u"}, {"content": "x"}]})"), "'messages'[1] has no 'role'");
}

TEST(InstructionReader, OneFormatPerFileAndBlankLines) {
  InstructionFileReader reader("f.jsonl");
  EXPECT_FALSE(reader.read_line(" \r", 1).has_value());
  EXPECT_TRUE(reader.read_line(R"({"text": "a"})", 2).has_value());
  const std::string m = testing::bad_input_message([&] { reader.read_line(R"({"messages": [{"role": "u"}]})", 5); });
  EXPECT_MENTIONS(m, "f.jsonl:5: a messages example, but line 2 is text");
}

std::filesystem::path scratch_dir(const std::string& name) { return testing::fresh_dir("instruction", name); }

void write(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(InstructionFiles, LinesDirectoriesAndTheLineCap) {
  const auto dir = scratch_dir("files");
  write(dir / "b.jsonl", "{\"text\": \"b1\"}\r\n\n{\"text\": \"b3\"}");  // CRLF, a blank line, no final newline
  write(dir / "a.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"a1\"}]}\n");
  write(dir / "c.txt", "not read");
  std::vector<std::string> origins;
  const auto collect = [&](InstructionExample&& ex) { origins.push_back(ex.origin); };
  EXPECT_EQ(for_each_instruction_example(dir, collect), 2u);
  const std::string a = (dir / "a.jsonl").string(), b = (dir / "b.jsonl").string();
  EXPECT_EQ(origins, (std::vector<std::string>{a + ":1", b + ":1", b + ":3"}));
  EXPECT_MENTIONS(testing::bad_input_message([&] { for_each_instruction_example(dir / "b.jsonl", collect, 10); }),
                  b + ":1: a line longer than 10 bytes");
  write(dir / "empty.jsonl", "\n \n");
  EXPECT_MENTIONS(testing::bad_input_message([&] { for_each_instruction_example(dir / "empty.jsonl", collect); }),
                  "no examples");
  EXPECT_MENTIONS(testing::bad_input_message([&] { for_each_instruction_example(dir / "none.jsonl", collect); }),
                  "none.jsonl: cannot open");
}

// A model directory: the character-level tokenizer and a template that marks the
// assistant's text and its eos: "u>hi\na>yo<e>".
std::filesystem::path model_dir() {
  const auto dir = scratch_dir("model");
  json vocab = json::object();
  for (char c = 'a'; c <= 'z'; ++c) vocab[std::string(1, c)] = id(c);
  vocab[" "] = id(' '), vocab[">"] = id('>'), vocab["\n"] = id('\n');
  const json added = json::array({{{"id", eos}, {"content", "<e>"}, {"special", true}}});
  write(dir / "tokenizer.json",
        json{{"added_tokens", added}, {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}}.dump());
  write(dir / "tokenizer_config.json", R"({"eos_token": "<e>"})");
  write(dir / "chat_template.jinja",
        "{% for m in messages %}{{ m.role[0] }}>{% if m.role == 'assistant' %}{% generation %}{{ m.content }}<e>"
        "{% endgeneration %}{% else %}{{ m.content }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}a>{% endif %}");
  return dir;
}

Ids ids_of(const std::string& text) {
  Ids ids;
  for (char c : text) ids.push_back(id(c));
  return ids;
}

SftData prepare(const std::string& jsonl, SftOptions options = {}) {
  const auto dir = model_dir();
  write(dir / "data.jsonl", jsonl);
  return prepare_instruction_data(dir / "data.jsonl", dir, options);
}

TEST(SftPrepare, TextGetsOneEos) {
  const SftData d = prepare("{\"text\": \"ab\"}\n{\"text\": \"ab<e>\"}\n");
  ASSERT_EQ(d.examples.size(), 2u);
  for (const SftExample& e : d.examples) {
    EXPECT_EQ(e.input_ids, (Ids{id('a'), id('b'), eos}));
    EXPECT_EQ(e.labels, e.input_ids);
  }
}

TEST(SftPrepare, PromptCompletionLabelsTheCompletion) {
  const std::string line = "{\"prompt\": \"ab\", \"completion\": \"c\"}\n";
  const SftData d = prepare(line);
  ASSERT_EQ(d.examples.size(), 1u);
  EXPECT_EQ(d.examples[0].input_ids, (Ids{id('a'), id('b'), id('c'), eos}));
  EXPECT_EQ(d.examples[0].labels, (Ids{no, no, id('c'), eos}));
  SftOptions everything;
  everything.completion_only_loss = false;
  EXPECT_EQ(prepare(line, everything).examples[0].labels, d.examples[0].input_ids);
}

TEST(SftPrepare, ConversationsAndAssistantOnlyLoss) {
  const std::string messages = R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})";
  const std::string pc = R"({"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "yo"}]})";
  Ids ids = ids_of("u>hi\na>yo");
  ids.push_back(eos);
  const Ids answer{no, no, no, no, no, no, no, id('y'), id('o'), eos};
  EXPECT_EQ(prepare(messages).examples[0].labels, ids);
  EXPECT_EQ(prepare(pc).examples[0].input_ids, ids);
  EXPECT_EQ(prepare(pc).examples[0].labels, answer);  // after "u>hi\na>", the prompt with the generation prompt
  SftOptions assistant;
  assistant.assistant_only_loss = true;
  EXPECT_EQ(prepare(messages, assistant).examples[0].labels, answer);
  const std::string m = testing::bad_input_message(
      [&] { prepare(R"({"messages": [{"role": "user", "content": "hi"}]})", assistant); });
  EXPECT_MENTIONS(m, "data.jsonl:1: no assistant tokens");
}

TEST(SftPrepare, TruncationKeepsTheStartAndDropsUnlabelled) {
  SftOptions options;
  options.seq_len = 3;
  const SftData d = prepare(R"({"prompt": "abcd", "completion": "e"}
{"prompt": "a", "completion": "bcd"}
{"prompt": "", "completion": "a"})",
                            options);
  ASSERT_EQ(d.examples.size(), 2u);
  EXPECT_EQ(d.examples[0].input_ids, (Ids{id('a'), id('b'), id('c')}));
  EXPECT_EQ(d.examples[0].labels, (Ids{no, id('b'), id('c')}));
  const SftSummary& s = d.summary;
  EXPECT_EQ(s.examples, 3);
  EXPECT_EQ(s.dropped_truncated, 1);
  EXPECT_EQ(s.truncated, 2);
  EXPECT_EQ(s.tokens, 5);
  EXPECT_EQ(s.label_tokens, 4);
  EXPECT_EQ(s.line(3), "3 examples in 1 file, 1 dropped (0 with no label tokens, 1 with none left after "
                       "truncation), 2 truncated to 3 tokens; 2 kept, 5 tokens, 4 label tokens");
}

TEST(SftPrepare, WritesRowsAtomically) {
  const auto dir = scratch_dir("write");
  write_sft_jsonl(dir / "out.jsonl", pack_examples({SftExample{{5, 6}, {no, 6}}}, 8, Packing::none));
  std::ifstream in(dir / "out.jsonl");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "{\"input_ids\": [5, 6], \"labels\": [-100, 6], \"position_ids\": [0, 1], \"seq_lengths\": [2]}\n");
  write_sft_jsonl(dir / "packed.jsonl", pack_examples({SftExample{{5, 6}, {no, 6}}, SftExample{{7}, {7}}}, 8, Packing::bfd));
  std::ifstream packed(dir / "packed.jsonl");
  const std::string row((std::istreambuf_iterator<char>(packed)), std::istreambuf_iterator<char>());
  EXPECT_EQ(row, "{\"input_ids\": [5, 6, 7], \"labels\": [-100, 6, 7], \"position_ids\": [0, 1, 0], \"seq_lengths\": [2, 1]}\n");
}

}  // namespace
}  // namespace lorafast
