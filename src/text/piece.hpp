// A piece of the text being encoded, as it moves from the added-token split through
// normalization and pre-tokenization to the model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lorafast::text {

struct Piece {
  std::string text;
  std::int32_t added_id = -1;  // >= 0: an added token, passed through unchanged
  bool at_start = false;       // begins at byte 0 of the encoded text
};

// The library's SplitDelimiterBehavior: what becomes of the pattern's matches.
enum class SplitBehavior { isolated, removed, merged_with_previous, merged_with_next, contiguous };

}  // namespace lorafast::text
