#include "text_stream.hpp"

#include <string_view>

namespace lorafast::cli {
namespace {
constexpr std::string_view replacement = "\xEF\xBF\xBD";  // U+FFFD in UTF-8
}

void TextStream::start(const Tokens& context, bool echo) {
  ids_ = context;
  if (echo) {
    emit(/*final=*/true);
  } else {
    printed_ = tokenizer_.decode(ids_).size();
  }
}

void TextStream::put(std::int32_t token) {
  ids_.push_back(token);
  emit(/*final=*/false);
}

void TextStream::finish() { emit(/*final=*/true); }

void TextStream::emit(bool final) {
  const std::string text = tokenizer_.decode(ids_);
  if (!final && std::string_view(text).ends_with(replacement)) return;
  if (text.size() > printed_) {
    std::fwrite(text.data() + printed_, 1, text.size() - printed_, out_);
    std::fflush(out_);
    printed_ = text.size();
  }
}

}  // namespace lorafast::cli
