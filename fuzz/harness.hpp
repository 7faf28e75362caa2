// What every fuzz harness checks: a reader either accepts its input or throws
// lorafast::Error(bad_input) whose message is one line, escaped, bounded in length
// and names the input. Anything else (another exception, a crash, a sanitizer
// report, a message that breaks the rules) is a finding: libFuzzer reports the
// uncaught exception or the trap with the input that caused it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "lorafast/error.hpp"
#include "lorafast/gpt.hpp"

namespace lorafast::fuzz {

inline const std::string origin = "fuzz-input";

// The model the harnesses load weights, adapters and checkpoints for: small, so
// that the seed corpus holds complete valid files the fuzzer can mutate.
inline GptConfig tiny_model() {
  GptConfig config;
  config.n_layer = 2, config.n_head = 1, config.n_embd = 4, config.n_positions = 4, config.vocab_size = 8;
  config.layer_norm_epsilon = 1e-5;
  return config;
}

inline void require(bool ok, const char* rule, const std::string& message) {
  if (ok) return;
  std::fprintf(stderr, "fuzz: message breaks the rule '%s': %s\n", rule, message.c_str());
  __builtin_trap();
}

template <class Read>
int run_reader(Read&& read) {
  try {
    read();
  } catch (const Error& e) {
    const std::string message = e.what();
    require(e.kind() == ErrorKind::bad_input, "bad input is ErrorKind::bad_input", message);
    require(message.size() <= max_message_bytes + 3, "at most max_message_bytes", message);
    for (unsigned char c : message) require(c >= 0x20 && c != 0x7f, "no control bytes", message);
    require(message.find(origin) != std::string::npos, "names the input", message);
  }
  return 0;
}

// Inputs made of two files: the bytes before the first NUL (JSON never holds a raw
// NUL) and the bytes after it.
inline std::pair<std::string_view, std::string_view> split_at_nul(const std::uint8_t* data, std::size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const std::size_t nul = all.find('\0');
  if (nul == std::string_view::npos) return {all, {}};
  return {all.substr(0, nul), all.substr(nul + 1)};
}

inline std::span<const std::byte> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace lorafast::fuzz
