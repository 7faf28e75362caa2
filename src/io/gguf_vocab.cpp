// gguf_tokenizer_metadata (gguf_vocab.hpp). The pre-tokenizer name is the one
// llama.cpp gives the split pattern (its convert_hf_to_gguf.py recognises a
// tokenizer by hashing how it splits a test text; the patterns below are those of
// the names listed, compared exactly).
#include "io/gguf_vocab.hpp"

#include <map>

#include "core/json_read.hpp"
#include "core/text_file.hpp"

namespace lorafast {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
constexpr auto bad = ErrorKind::bad_input;
constexpr std::uint64_t max_tokenizer_bytes = 1ull << 30;

// llama.cpp's token types (gguf-py TokenType).
constexpr std::int32_t normal = 1, control = 3, user_defined = 4, unused = 5;

const std::pair<const char*, const char*> known_splits[] = {
    {"gpt-2", R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)"},
    {"llama-bpe",
     R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
    {"qwen2",
     R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
};

// The split pattern of a byte-level pre-tokenizer: ByteLevel with its own (GPT-2's)
// regex, or a Split on a pattern followed by ByteLevel without one.
std::string split_pattern(const json& pre, const std::string& origin) {
  const auto type = [](const json& j) { return j.is_object() ? j.value("type", std::string()) : std::string(); };
  if (type(pre) == "ByteLevel" && pre.value("use_regex", true)) return known_splits[0].second;
  const json* parts = type(pre) == "Sequence" ? find_field(pre, "pretokenizers") : nullptr;
  LF_CHECK(parts && parts->is_array() && parts->size() == 2 && type((*parts)[0]) == "Split" &&
               type((*parts)[1]) == "ByteLevel" && !(*parts)[1].value("use_regex", true),
           ErrorKind::cannot_meet, origin,
           ": pre_tokenizer is not byte-level BPE's (ByteLevel, or Split + ByteLevel): not exported to GGUF");
  const json* pattern = find_field((*parts)[0], "pattern");
  const json* regex = pattern && pattern->is_object() ? find_field(*pattern, "Regex") : nullptr;
  LF_CHECK(regex && regex->is_string(), ErrorKind::cannot_meet, origin, ": the Split pre-tokenizer has no Regex pattern");
  return regex->get<std::string>();
}

// A token named in tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> config_token(const json& config, const char* key) {
  const json* v = find_field(config, key);
  if (v && v->is_string()) return v->get<std::string>();
  if (v && v->is_object() && v->contains("content") && (*v)["content"].is_string()) return (*v)["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

GgufMetadata gguf_tokenizer_metadata(const fs::path& dir, std::int64_t vocab_size) {
  const fs::path path = dir / "tokenizer.json";
  const std::string origin = path.string();
  LF_CHECK(fs::exists(path), ErrorKind::cannot_meet, dir.string(),
           ": no tokenizer.json; a llama.cpp model file needs the tokenizer");
  const json tok = parse_json(read_text_file(path, max_tokenizer_bytes), origin);
  const json& model = require_field(tok, "model", origin);
  LF_CHECK(model.is_object() && model.value("type", std::string()) == "BPE", ErrorKind::cannot_meet, origin,
           ": model type is not BPE (SentencePiece and other tokenizers are not exported yet)");
  const std::string pattern = split_pattern(require_field(tok, "pre_tokenizer", origin), origin);
  std::string pre;
  for (const auto& [name, known] : known_splits)
    if (pattern == known) pre = name;
  LF_CHECK(!pre.empty(), ErrorKind::cannot_meet, origin, ": split pattern ", quote(pattern),
           " is not one llama.cpp names (gpt-2, llama-bpe, qwen2); it would tokenize differently");

  std::vector<std::string> tokens(static_cast<std::size_t>(vocab_size));
  std::vector<std::int32_t> types(static_cast<std::size_t>(vocab_size), 0);
  std::map<std::string, std::int32_t> id_of;
  const auto place = [&](const std::string& token, std::int64_t id, std::int32_t type) {
    LF_CHECK(id >= 0 && id < vocab_size, bad, origin, ": token ", quote(token), " has id ", id,
             " outside the model's vocab_size ", vocab_size);
    tokens[static_cast<std::size_t>(id)] = token;
    types[static_cast<std::size_t>(id)] = type;
    id_of[token] = static_cast<std::int32_t>(id);
  };
  const json& vocab = require_field(model, "vocab", origin);
  LF_CHECK(vocab.is_object(), bad, origin, ": model.vocab is not an object");
  for (const auto& [token, id] : vocab.items()) place(token, json_integer(id, 0, vocab_size, origin + ": vocab id"), normal);
  if (const json* added = find_field(tok, "added_tokens"); added && added->is_array())
    for (const auto& t : *added)
      place(json_string(require_field(t, "content", origin), origin + ": added token"),
            json_integer(require_field(t, "id", origin), 0, vocab_size, origin + ": added token id"),
            t.value("special", false) ? control : user_defined);
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (types[i] == 0) {
      tokens[i] = cat("[PAD", i, ']');
      types[i] = unused;
    }
  std::vector<std::string> merges;
  if (const json* m = find_field(model, "merges"); m && m->is_array())
    for (const auto& pair : *m)
      merges.push_back(pair.is_array() && pair.size() == 2 ? cat(json_string(pair[0], origin + ": merge"), ' ',
                                                                  json_string(pair[1], origin + ": merge"))
                                                            : json_string(pair, origin + ": merge"));

  GgufMetadata meta{{"tokenizer.ggml.model", std::string("gpt2")},
                    {"tokenizer.ggml.pre", pre},
                    {"tokenizer.ggml.tokens", tokens},
                    {"tokenizer.ggml.token_type", types},
                    {"tokenizer.ggml.merges", merges}};
  const fs::path config_path = dir / "tokenizer_config.json";
  json config = json::object();
  if (fs::exists(config_path)) config = parse_json(read_text_file(config_path, max_tokenizer_bytes), config_path.string());
  for (const auto& [key, gguf_key] : {std::pair{"bos_token", "tokenizer.ggml.bos_token_id"},
                                      std::pair{"eos_token", "tokenizer.ggml.eos_token_id"},
                                      std::pair{"pad_token", "tokenizer.ggml.padding_token_id"}})
    if (const auto token = config_token(config, key)) {
      const auto it = id_of.find(*token);
      LF_CHECK(it != id_of.end(), bad, config_path.string(), ": ", key, ' ', quote(*token), " is not a token");
      meta.emplace_back(gguf_key, static_cast<std::uint32_t>(it->second));
    }
  if (const json* add_bos = find_field(config, "add_bos_token"); add_bos && add_bos->is_boolean())
    meta.emplace_back("tokenizer.ggml.add_bos_token", add_bos->get<bool>());
  if (fs::exists(dir / "chat_template.jinja"))
    meta.emplace_back("tokenizer.chat_template", read_text_file(dir / "chat_template.jinja", max_tokenizer_bytes));
  else if (const json* t = find_field(config, "chat_template"); t && t->is_string())
    meta.emplace_back("tokenizer.chat_template", t->get<std::string>());
  return meta;
}

}  // namespace lorafast
