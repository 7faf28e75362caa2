// Streams generated tokens as text through a tokenizer: after each token the whole
// sequence is decoded again and the bytes past what was printed go out, except while
// the text ends in U+FFFD (a character whose bytes are not all generated yet, e.g. a
// byte-level BPE's split emoji): those are held back until the character completes
// or the stream ends.
#pragma once

#include <cstdio>
#include <string>

#include "lorafast/tokenizer.hpp"
#include "lorafast/train_data.hpp"

namespace lorafast::cli {

class TextStream {
 public:
  TextStream(const Tokenizer& tokenizer, std::FILE* out) : tokenizer_(tokenizer), out_(out) {}

  // Context tokens (the prompt): printed when `echo`, else only remembered, so that
  // what follows is decoded in context.
  void start(const Tokens& context, bool echo);
  void put(std::int32_t token);
  void finish();  // prints what was held back

 private:
  void emit(bool final);

  const Tokenizer& tokenizer_;
  std::FILE* out_;
  Tokens ids_;
  std::size_t printed_ = 0;  // bytes of decode(ids_) already written (or skipped: an unechoed prompt)
};

}  // namespace lorafast::cli
