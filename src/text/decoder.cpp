#include "text/decoder.hpp"

#include <memory>

#include "lorafast/tokenizer.hpp"
#include "text/byte_level.hpp"
#include "text/regex.hpp"
#include "text/utf8.hpp"

namespace lorafast::text {
namespace {

constexpr auto bad = ErrorKind::bad_input;

// The bytes of all tokens (a token holding any character outside the byte-level
// alphabet contributes its UTF-8 as is), as one string with U+FFFD for bad UTF-8.
void byte_level(std::vector<std::string>& tokens) {
  std::string bytes;
  for (const std::string& t : tokens) {
    const std::size_t mark = bytes.size();
    bool all_mapped = true;
    for (std::size_t pos = 0; pos < t.size() && all_mapped;) {
      const int b = byte_of_char(next_code_point(t, pos));
      if (b < 0) all_mapped = false;
      else bytes += static_cast<char>(b);
    }
    if (!all_mapped) bytes.replace(mark, std::string::npos, t);
  }
  tokens.assign(1, replace_invalid_utf8(bytes));
}

// "<0xNN>" tokens become bytes; each run of them one string if it is UTF-8, else
// one U+FFFD per byte.
void byte_fallback(std::vector<std::string>& tokens) {
  std::vector<std::string> out;
  std::string run;
  const auto flush = [&] {
    if (run.empty()) return;
    if (is_valid_utf8(run)) out.push_back(run);
    else
      for (std::size_t i = 0; i < run.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
    run.clear();
  };
  for (std::string& t : tokens) {
    const bool is_byte = t.size() == 6 && t.starts_with("<0x") && t.ends_with('>') &&
                         std::isxdigit(static_cast<unsigned char>(t[3])) && std::isxdigit(static_cast<unsigned char>(t[4]));
    if (is_byte) {
      run += static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16));
      continue;
    }
    flush();
    out.push_back(std::move(t));
  }
  flush();
  tokens = std::move(out);
}

// Up to `start` leading and `stop` trailing `content` characters off each token.
Decoder strip(const json& component, const std::string& where) {
  const char32_t content = char_field(component, "content", where);
  const auto start = static_cast<std::size_t>(integer_field(component, "start", 0, 0, 1 << 30, where));
  const auto stop = static_cast<std::size_t>(integer_field(component, "stop", 0, 0, 1 << 30, where));
  return [=](std::vector<std::string>& tokens) {
    for (std::string& t : tokens) {
      std::vector<char32_t> chars;
      for (std::size_t pos = 0; pos < t.size();) chars.push_back(next_code_point(t, pos));
      std::size_t begin = 0, end = chars.size();
      while (begin < std::min(start, chars.size()) && chars[begin] == content) ++begin;
      for (std::size_t i = 0; i < stop && end > begin && chars[end - 1] == content; ++i) --end;
      std::string kept;
      for (std::size_t i = begin; i < end; ++i) append_utf8(kept, chars[i]);
      t = std::move(kept);
    }
  };
}

Decoder replace(const json& component, const std::string& where) {
  auto regex = std::make_shared<const Regex>(pattern_field(component, "pattern", where), where);
  const std::string content = json_string(require_field(component, "content", where), field_name(where, "content"));
  return [regex, content](std::vector<std::string>& tokens) {
    std::vector<Span> spans;
    for (std::string& t : tokens) {
      spans.clear();
      regex->find_matches(t, spans);
      std::string out;
      for (const Span& s : spans) out += s.is_match ? std::string_view(content) : std::string_view(t).substr(s.begin, s.end - s.begin);
      t = std::move(out);
    }
  };
}

// The replacement character becomes a space; in the first token it is dropped
// instead unless prepend_scheme is "never".
Decoder metaspace(const json& component, const std::string& where) {
  std::string replacement;
  append_utf8(replacement, char_field(component, "replacement", where));
  const std::string scheme = prepend_scheme_field(component, where);
  const bool drop_first = scheme != "never";
  return [=](std::vector<std::string>& tokens) {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      for (std::size_t pos = 0; pos < t.size();) {
        if (t.compare(pos, replacement.size(), replacement) == 0) {
          if (!(i == 0 && drop_first)) out += ' ';
          pos += replacement.size();
        } else {
          out += t[pos++];
        }
      }
      tokens[i] = std::move(out);
    }
  };
}

// BPEDecoder: the end-of-word suffix becomes a space, none after the last token.
Decoder bpe_decoder(const json& component, const std::string& where) {
  const std::string suffix = string_field(component, "suffix", "</w>", where);
  return [suffix](std::vector<std::string>& tokens) {
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      const std::string space = i + 1 == tokens.size() ? "" : " ";
      for (std::size_t at = t.find(suffix); !suffix.empty() && at != std::string::npos; at = t.find(suffix, at + space.size()))
        t.replace(at, suffix.size(), space);
    }
  };
}

Decoder sequence(const json& component, const std::string& where) {
  const json& items = require_field(component, "decoders", where);
  LF_CHECK(items.is_array(), bad, field_name(where, "decoders"), " must be an array");
  std::vector<Decoder> steps;
  for (std::size_t i = 0; i < items.size(); ++i) {
    Decoder step = parse_decoder(items[i], item_name(where, "decoders", i));
    if (step) steps.push_back(std::move(step));
  }
  return [steps = std::move(steps)](std::vector<std::string>& tokens) {
    for (const Decoder& step : steps) step(tokens);
  };
}

}  // namespace

Decoder parse_decoder(const json& component, const std::string& where) {
  if (component.is_null()) return {};
  const std::string& type = component_type(component, where);
  if (type == "Sequence") return sequence(component, where);
  if (type == "ByteLevel") return byte_level;
  if (type == "ByteFallback") return byte_fallback;
  if (type == "Fuse")
    return [](std::vector<std::string>& tokens) {
      std::string all;
      for (const std::string& t : tokens) all += t;
      tokens.assign(1, std::move(all));
    };
  if (type == "Strip") return strip(component, where);
  if (type == "Replace") return replace(component, where);
  if (type == "Metaspace") return metaspace(component, where);
  if (type == "BPEDecoder") return bpe_decoder(component, where);
  throw Error(bad, cat(field_name(where, "type"), ": decoder ", quote(type),
                       " is not supported (ByteLevel, ByteFallback, Metaspace, Fuse, Strip, Replace, BPEDecoder, "
                       "Sequence)"));
}

}  // namespace lorafast::text
