// Splitting a piece at a pattern's matches with one of the library's five
// behaviours (NormalizedString::split), the core of the Split, Metaspace, Digits,
// Punctuation and whitespace pre-tokenizers.
#pragma once

#include <vector>

#include "text/piece.hpp"
#include "text/regex.hpp"

namespace lorafast::text {

// Appends the non-empty parts of `piece` that `behavior` keeps when `regex` (matches
// flipped with non-matches when `invert`) splits it.
void split_piece(Piece&& piece, const Regex& regex, SplitBehavior behavior, bool invert, std::vector<Piece>& out);

}  // namespace lorafast::text
