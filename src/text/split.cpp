#include "text/split.hpp"

#include <algorithm>

namespace lorafast::text {
namespace {

// A kept or removed part of the piece.
struct Part {
  std::size_t begin, end;
  bool removed;
};

// The library's folds: a match joins the part before it (after it, for
// merged_with_next) unless that part is a match too; contiguous joins runs of
// matches and runs of non-matches.
std::vector<Part> parts_of(const std::vector<Span>& spans, SplitBehavior behavior) {
  std::vector<Part> parts;
  parts.reserve(spans.size());
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::isolated:
      for (const Span& s : spans) parts.push_back({s.begin, s.end, false});
      break;
    case SplitBehavior::removed:
      for (const Span& s : spans) parts.push_back({s.begin, s.end, s.is_match});
      break;
    case SplitBehavior::contiguous:
      for (const Span& s : spans) {
        if (s.is_match == previous_match && !parts.empty()) parts.back().end = s.end;
        else parts.push_back({s.begin, s.end, false});
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::merged_with_previous:
      for (const Span& s : spans) {
        if (s.is_match && !previous_match && !parts.empty()) parts.back().end = s.end;
        else parts.push_back({s.begin, s.end, false});
        previous_match = s.is_match;
      }
      break;
    case SplitBehavior::merged_with_next:
      for (auto s = spans.rbegin(); s != spans.rend(); ++s) {
        if (s->is_match && !previous_match && !parts.empty()) parts.back().begin = s->begin;
        else parts.push_back({s->begin, s->end, false});
        previous_match = s->is_match;
      }
      std::reverse(parts.begin(), parts.end());
      break;
  }
  return parts;
}

}  // namespace

void split_piece(Piece&& piece, const Regex& regex, SplitBehavior behavior, bool invert, std::vector<Piece>& out) {
  std::vector<Span> spans;
  regex.find_matches(piece.text, spans);
  if (invert)
    for (Span& s : spans) s.is_match = !s.is_match;
  const std::vector<Part> parts = parts_of(spans, behavior);
  if (parts.size() == 1 && !parts[0].removed && parts[0].begin == 0 && parts[0].end == piece.text.size()) {
    if (!piece.text.empty()) out.push_back(std::move(piece));
    return;
  }
  for (const Part& p : parts) {
    if (p.removed || p.begin == p.end) continue;
    out.push_back({piece.text.substr(p.begin, p.end - p.begin), -1, piece.at_start && p.begin == 0});
  }
}

}  // namespace lorafast::text
