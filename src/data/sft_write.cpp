// write_sft_jsonl (sft_rows.hpp): one line per row, its documents' ids, labels and
// restarting position_ids concatenated, and their seq_lengths.
#include <algorithm>
#include <charconv>
#include <span>

#include "lorafast/atomic_file.hpp"
#include "lorafast/sft_rows.hpp"

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

// Row r's line.
std::string row_line(const SftRows& rows, std::int64_t r) {
  std::vector<std::int32_t> ids, labels, positions;
  std::vector<std::size_t> lengths;
  for (const SftExample& e : rows.row(r)) {
    ids.insert(ids.end(), e.input_ids.begin(), e.input_ids.end());
    labels.insert(labels.end(), e.labels.begin(), e.labels.end());
    for (std::size_t i = 0; i < e.input_ids.size(); ++i) positions.push_back(static_cast<std::int32_t>(i));
    lengths.push_back(e.input_ids.size());
  }
  std::string out;
  out.reserve(ids.size() * 16 + 80);
  out += '{';
  append_list(out, "input_ids", ids.size(), [&](std::size_t i) { return ids[i]; });
  out += ", ";
  append_list(out, "labels", labels.size(), [&](std::size_t i) { return labels[i]; });
  out += ", ";
  append_list(out, "position_ids", positions.size(), [&](std::size_t i) { return positions[i]; });
  out += ", ";
  append_list(out, "seq_lengths", lengths.size(), [&](std::size_t i) { return lengths[i]; });
  out += "}\n";
  return out;
}

}  // namespace

void write_sft_jsonl(const std::filesystem::path& path, const SftRows& rows) {
  constexpr std::int64_t batch = 512;  // rows formatted in parallel, then written in order
  AtomicFile file(path);
  std::vector<std::string> lines(batch);
  std::string out;
  for (std::int64_t first = 0; first < rows.rows(); first += batch) {
    const std::int64_t count = std::min(batch, rows.rows() - first);
#pragma omp parallel for schedule(dynamic, 16)
    for (std::int64_t r = 0; r < count; ++r) lines[static_cast<std::size_t>(r)] = row_line(rows, first + r);
    out.clear();
    for (std::int64_t r = 0; r < count; ++r) out += lines[static_cast<std::size_t>(r)];
    file.write(std::as_bytes(std::span(out.data(), out.size())));
  }
  file.commit();
}

}  // namespace lorafast
