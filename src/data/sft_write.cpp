// write_sft_jsonl (instruction_data.hpp): one row per example, the layout packed rows
// will share (position_ids restarting and seq_lengths per document).
#include <charconv>

#include "lorafast/atomic_file.hpp"
#include "lorafast/instruction_data.hpp"

namespace lorafast {

namespace {

template <class Value>
void append_list(std::string& out, const char* name, std::size_t n, Value&& value) {
  out += '"';
  out += name;
  out += "\": [";
  char digits[24];
  for (std::size_t i = 0; i < n; ++i) {
    if (i > 0) out += ", ";
    out.append(digits, std::to_chars(digits, digits + sizeof digits, value(i)).ptr);
  }
  out += ']';
}

}  // namespace

void write_sft_jsonl(const std::filesystem::path& path, const std::vector<SftExample>& examples) {
  std::string out;
  for (const SftExample& e : examples) {
    const std::size_t n = e.input_ids.size();
    out += '{';
    append_list(out, "input_ids", n, [&](std::size_t i) { return e.input_ids[i]; });
    out += ", ";
    append_list(out, "labels", n, [&](std::size_t i) { return e.labels[i]; });
    out += ", ";
    append_list(out, "position_ids", n, [](std::size_t i) { return i; });
    out += ", ";
    append_list(out, "seq_lengths", 1, [&](std::size_t) { return n; });
    out += "}\n";
  }
  write_file_atomically(path, out);
}

}  // namespace lorafast
