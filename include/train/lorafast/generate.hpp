// The generation loop: prefill a CachedDecoder (decoder.hpp) with the prompt, then
// sample a token, hand it to the sink, feed it back, until `max_tokens` are made or
// an end-of-sequence id is drawn (it is handed to the sink too, then the loop stops).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "lorafast/decoder.hpp"

namespace lorafast {

// Receives each new token as soon as it exists: the CLI prints a byte, an id per
// line, or (with a tokenizer) the token's text.
using TokenSink = std::function<void(std::int32_t token)>;

struct GenerateOptions {
  std::int64_t max_tokens = 200;   // >= 0
  SamplingOptions sampling;
  std::uint64_t seed = 0;          // the SplitMix64Rng stream of the draws
  std::vector<std::int32_t> eos;   // ids that end the sequence (ids outside the vocabulary never occur)
};

struct GenerateResult {
  std::vector<std::int32_t> tokens;  // the new tokens, the eos id included when one ended the loop
  bool stopped_at_eos = false;
  double prefill_seconds = 0;        // the prompt's forward pass and the first draw
  double decode_seconds = 0;         // every later step
};

// The positions generation needs: the prompt plus max_tokens, except that the last
// new token is never fed back (CachedDecoder's capacity).
std::int64_t generation_positions(std::int64_t prompt_tokens, std::int64_t max_tokens);

// Error(usage) for an empty prompt, negative max_tokens, bad sampling options or a
// prompt + tokens longer than the model's positions (max_decode_positions);
// Error(bad_input) for a prompt token outside the vocabulary.
template <class W>
GenerateResult generate(const W& weights, const GptLora<typename W::value_type>* lora,
                        std::span<const std::int32_t> prompt, const GenerateOptions& options,
                        const TokenSink& sink = {});

}  // namespace lorafast
