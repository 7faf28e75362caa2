// Fuzz harness: a tokenizer.json, then (after a NUL) a text: the file is accepted or
// refused with Error(bad_input) naming it; an accepted tokenizer encodes the text
// (also with the post-processor's special tokens, which may be a type it refuses
// as unsupported) and decodes the ids back without error.
#include "harness.hpp"
#include "lorafast/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace lorafast;
  const auto [json, text] = fuzz::split_at_nul(data, size);
  return fuzz::run_reader([&, json = json, text = text] {
    const Tokenizer tokenizer = Tokenizer::from_json(json, fuzz::origin);
    const auto ids = tokenizer.encode(text);
    tokenizer.decode(ids);
    try {
      tokenizer.decode(tokenizer.encode_with_special_tokens(text));
    } catch (const Error& e) {
      if (e.kind() != ErrorKind::cannot_meet) throw;
    }
  });
}
