// assistant_masks (chat_template.hpp): token boundaries in the text by decoding,
// then transformers' overlap rule over the generation ranges.
#include <algorithm>

#include "lorafast/chat_template.hpp"
#include "lorafast/error.hpp"
#include "lorafast/tokenizer.hpp"

namespace lorafast {

std::vector<std::int8_t> assistant_masks(const Tokenizer& tokenizer, const std::string& text,
                                         std::span<const std::int32_t> ids,
                                         const std::vector<std::pair<std::size_t, std::size_t>>& generation) {
  constexpr std::size_t unknown = static_cast<std::size_t>(-1);
  const std::size_t n = ids.size();
  // bound[i]: the byte where token i starts (bound[n] = the end), when the tokens
  // since the last known bound decode to exactly the text that follows it.
  std::vector<std::size_t> bound(n + 1, unknown);
  bound[0] = 0;
  std::size_t known = 0;
  for (std::size_t i = 1; i <= n; ++i) {
    const std::string piece = tokenizer.decode(ids.subspan(known, i - known));
    const std::size_t at = bound[known];
    if (at + piece.size() <= text.size() && text.compare(at, piece.size(), piece) == 0 &&
        (at + piece.size() == text.size() || (static_cast<unsigned char>(text[at + piece.size()]) & 0xC0) != 0x80)) {
      bound[i] = at + piece.size();
      known = i;
    }
  }
  LF_CHECK(bound[n] == text.size(), ErrorKind::bad_input,
           "assistant masks: the tokens do not decode to the rendered text (the tokenizer's normalizer changes it)");
  std::vector<std::int8_t> mask(n, 0);
  std::size_t span = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (bound[i] != unknown) start = bound[i];
    std::size_t j = i + 1;
    while (bound[j] == unknown) ++j;
    const std::size_t end = bound[j];
    while (span < generation.size() && start >= generation[span].second) ++span;
    if (span == generation.size()) break;
    if (end > generation[span].first) mask[i] = 1;
  }
  return mask;
}

}  // namespace lorafast
