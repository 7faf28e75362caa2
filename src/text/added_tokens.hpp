// tokenizer.json "added_tokens": tokens matched in the text before the model sees
// it, leftmost first and longest among those starting there (the library's
// Aho-Corasick LeftmostLongest). Tokens with normalized=false are found in the raw
// text, those with normalized=true in each normalized piece (as their own
// normalized content). single_word, lstrip and rstrip act as in the library.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "text/bpe.hpp"
#include "text/component_json.hpp"
#include "text/normalizer.hpp"
#include "text/piece.hpp"

namespace lorafast::text {

struct AddedToken {
  std::string content;
  std::int32_t id = 0;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

class AddedTokens {
 public:
  // Ids are the library's: the model's id when the content is in its vocabulary,
  // else the next one from the vocabulary's size on, in file order; a file id that
  // differs is an error.
  static AddedTokens parse(const json& list, const BpeModel& model, const Normalizer& normalizer,
                           const std::string& where);

  // Splits the pieces that are not added tokens at the raw (normalized: false)
  // or the normalized tokens.
  void split(std::vector<Piece>& pieces, bool normalized) const;

  const AddedToken* find(std::int32_t id) const;
  const AddedToken* find(std::string_view content) const;
  std::int32_t id_bound() const { return id_bound_; }

 private:
  // Patterns grouped by first byte, longest first.
  struct Matcher {
    std::array<std::vector<std::pair<std::string, std::size_t>>, 256> by_first_byte;
    bool empty = true;
    void add(const std::string& pattern, std::size_t token);
    // The leftmost-longest match at or after `from`: (begin, length, token), or false.
    bool find(std::string_view text, std::size_t from, std::size_t& begin, std::size_t& length,
              std::size_t& token) const;
  };
  void split_piece(Piece&& piece, const Matcher& matcher, std::vector<Piece>& out) const;

  std::vector<AddedToken> tokens_;
  StringMap<std::size_t> by_content_;
  std::unordered_map<std::int32_t, std::size_t> by_id_;
  Matcher raw_, normalized_;
  std::int32_t id_bound_ = 0;
};

}  // namespace lorafast::text
