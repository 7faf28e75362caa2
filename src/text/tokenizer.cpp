// Tokenizer: tokenizer.json's components wired in the library's order. Encoding:
// added tokens found in the raw text, then each other piece normalized, normalized
// added tokens found in it, pre-tokenized, and each word encoded by the BPE model.
// Decoding: each id's token (an added token first), through the decoder.
#include "lorafast/tokenizer.hpp"

#include "core/json_read.hpp"
#include "core/text_file.hpp"
#include "text/added_tokens.hpp"
#include "text/bpe.hpp"
#include "text/decoder.hpp"
#include "text/normalizer.hpp"
#include "text/post_processor.hpp"
#include "text/pre_tokenizer.hpp"

namespace lorafast {
namespace text {

struct TokenizerImpl {
  std::string origin;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  BpeModel model;
  AddedTokens added;
  Decoder decoder;
  PostProcessor post;
  std::optional<std::int32_t> bos, eos;
};

namespace {

constexpr auto bad = ErrorKind::bad_input;
constexpr std::uint64_t max_tokenizer_file_bytes = 256ull << 20;

const json& component(const json& doc, std::string_view key) {
  static const json null;
  const json* value = find_field(doc, key);
  return value == nullptr ? null : *value;
}

}  // namespace
}  // namespace text

using text::json;

Tokenizer::Tokenizer(std::unique_ptr<text::TokenizerImpl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_json(std::string_view json_text, const std::string& origin) {
  const json doc = parse_json(json_text, origin);
  LF_CHECK(doc.is_object(), text::bad, origin, ": a tokenizer.json must be an object, got ", describe(doc));
  text::Normalizer normalizer = text::parse_normalizer(text::component(doc, "normalizer"), origin + ": normalizer");
  text::PreTokenizer pre_tokenizer =
      text::parse_pre_tokenizer(text::component(doc, "pre_tokenizer"), origin + ": pre_tokenizer");
  text::BpeModel model = text::BpeModel::parse(require_field(doc, "model", origin), origin + ": model");
  text::AddedTokens added =
      text::AddedTokens::parse(text::component(doc, "added_tokens"), model, normalizer, origin + ": added_tokens");
  text::Decoder decoder = text::parse_decoder(text::component(doc, "decoder"), origin + ": decoder");
  text::PostProcessor post =
      text::parse_post_processor(text::component(doc, "post_processor"), origin + ": post_processor");
  for (const auto* ids : {&post.before, &post.after})
    for (const std::int32_t id : *ids)
      LF_CHECK(added.find(id) != nullptr || model.token_of(id) != nullptr, text::bad, origin,
               ": post_processor: id ", id, " is not a token");
  return Tokenizer(std::make_unique<text::TokenizerImpl>(text::TokenizerImpl{
      origin, std::move(normalizer), std::move(pre_tokenizer), std::move(model), std::move(added),
      std::move(decoder), std::move(post), std::nullopt, std::nullopt}));
}

Tokenizer Tokenizer::from_file(const std::filesystem::path& path) {
  return from_json(read_text_file(path, text::max_tokenizer_file_bytes), path.string());
}

Tokenizer Tokenizer::from_model_dir(const std::filesystem::path& dir) {
  Tokenizer t = from_file(dir / "tokenizer.json");
  const auto config = dir / "tokenizer_config.json";
  if (std::filesystem::exists(config))
    t.read_config(read_text_file(config, text::max_tokenizer_file_bytes), config.string());
  return t;
}

void Tokenizer::read_config(std::string_view json_text, const std::string& origin) {
  const json doc = parse_json(json_text, origin);
  LF_CHECK(doc.is_object(), text::bad, origin, ": must be an object, got ", describe(doc));
  const auto special = [&](std::string_view key) -> std::optional<std::int32_t> {
    const json* value = find_field(doc, key);
    if (value == nullptr || value->is_null()) return std::nullopt;
    const std::string what = text::field_name(origin, key);
    const std::string& content =
        json_string(value->is_object() ? require_field(*value, "content", what) : *value, what);
    const auto id = token_id(content);
    LF_CHECK(id.has_value(), text::bad, what, ": ", quote(content), " is not a token of ", impl_->origin);
    return id;
  };
  impl_->bos = special("bos_token");
  impl_->eos = special("eos_token");
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view raw) const {
  const text::TokenizerImpl& t = *impl_;
  std::vector<text::Piece> pieces;
  pieces.push_back({replace_invalid_utf8(raw), -1, true});
  t.added.split(pieces, false);
  if (t.normalizer) {
    for (text::Piece& p : pieces)
      if (p.added_id < 0) t.normalizer(p.text);
    std::erase_if(pieces, [](const text::Piece& p) { return p.text.empty(); });
  }
  t.added.split(pieces, true);
  if (t.pre_tokenizer) t.pre_tokenizer(pieces);
  std::vector<std::int32_t> ids;
  ids.reserve(raw.size() / 3);
  text::WordCache cache;
  for (const text::Piece& p : pieces) {
    if (p.added_id >= 0) ids.push_back(p.added_id);
    else if (!p.text.empty()) t.model.encode_word(p.text, cache, ids);
  }
  return ids;
}

std::vector<std::int32_t> Tokenizer::encode_with_special_tokens(std::string_view text) const {
  const text::PostProcessor& post = impl_->post;
  LF_CHECK(post.unsupported.empty(), ErrorKind::cannot_meet, impl_->origin, ": post_processor ",
           quote(post.unsupported), " is not supported (the special tokens it adds are unknown)");
  std::vector<std::int32_t> ids = post.before;
  const std::vector<std::int32_t> body = encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  ids.insert(ids.end(), post.after.begin(), post.after.end());
  return ids;
}

std::string Tokenizer::decode(std::span<const std::int32_t> ids) const {
  const text::TokenizerImpl& t = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (const text::AddedToken* added = t.added.find(ids[i])) {
      tokens.push_back(added->content);
    } else if (const std::string* token = t.model.token_of(ids[i])) {
      tokens.push_back(*token);
    } else {
      throw Error(text::bad, cat("id ", ids[i], " (at position ", i, ") is not a token of ", t.origin, " (ids 0..",
                                 vocab_size() - 1, ")"));
    }
  }
  std::string out;
  if (t.decoder) {
    t.decoder(tokens);
    for (const std::string& s : tokens) out += s;
  } else {
    for (std::size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
  }
  return out;
}

std::int32_t Tokenizer::vocab_size() const { return std::max(impl_->model.id_bound(), impl_->added.id_bound()); }

bool Tokenizer::is_special(std::int32_t id) const {
  const text::AddedToken* added = impl_->added.find(id);
  return added != nullptr && added->special;
}

std::optional<std::int32_t> Tokenizer::token_id(std::string_view token) const {
  if (const text::AddedToken* added = impl_->added.find(token)) return added->id;
  return impl_->model.id_of(token);
}

std::optional<std::int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<std::int32_t> Tokenizer::eos_id() const { return impl_->eos; }

}  // namespace lorafast
