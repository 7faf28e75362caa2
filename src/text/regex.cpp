#include "text/regex.hpp"


#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "lorafast/error.hpp"
#include "text/utf8.hpp"

namespace lorafast::text {
namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  return pcre2_get_error_message(code, buffer, sizeof buffer) < 0 ? cat("PCRE2 error ", code)
                                                                   : reinterpret_cast<const char*>(buffer);
}

// Per-thread match state shared by every pattern: one ovector pair is all that is
// read, and the JIT stack may grow to 8 MiB (long whitespace runs under \s+(?!\S)
// backtrack once per character).
struct MatchState {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 << 10, 8 << 20, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  MatchState() {
    LF_ASSERT(data != nullptr && stack != nullptr && context != nullptr);
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchState() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
};

MatchState& match_state() {
  thread_local MatchState state;
  return state;
}

}  // namespace

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  std::string where;
  ~Code() { pcre2_code_free(code); }
};

Regex::Regex(std::string_view pattern, const std::string& where) : code_(std::make_unique<Code>()) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  code_->where = where;
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  LF_CHECK(code_->code != nullptr, ErrorKind::bad_input, where, ": regex ", quote(pattern),
           " does not compile (at offset ", offset, "): ", pcre2_message(error));
  code_->jit = pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE) == 0;
}

void Regex::find_matches(std::string_view text, std::vector<Span>& out) const {
  if (text.empty()) {
    out.push_back({0, 0, false});
    return;
  }
  MatchState& state = match_state();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::size_t search_from = 0;   // where the next search starts
  std::size_t previous_end = 0;  // end of the last piece pushed
  bool any_match = false;
  std::size_t last_match_end = 0;
  while (search_from <= text.size()) {
    const int rc = code_->jit ? pcre2_jit_match(code_->code, subject, text.size(), search_from, 0, state.data,
                                                state.context)
                              : pcre2_match(code_->code, subject, text.size(), search_from, PCRE2_NO_UTF_CHECK,
                                            state.data, state.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    LF_CHECK(rc >= 0, ErrorKind::bad_input, code_->where, ": regex gave up on the text: ", pcre2_message(rc));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(state.data);
    const std::size_t begin = ovector[0], end = ovector[1];
    if (begin == end && any_match && last_match_end == end) {
      // Oniguruma's iterator (as the library uses it) steps one character on.
      search_from += search_from < text.size() ? sequence_length(static_cast<unsigned char>(text[search_from])) : 1;
      continue;
    }
    if (previous_end != begin) out.push_back({previous_end, begin, false});
    out.push_back({begin, end, true});
    previous_end = end;
    search_from = end;
    last_match_end = end;
    any_match = true;
  }
  if (previous_end != text.size()) out.push_back({previous_end, text.size(), false});
}

Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;
Regex::~Regex() = default;

}  // namespace lorafast::text
