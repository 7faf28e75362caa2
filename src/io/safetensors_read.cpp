// safetensors reader. The file is hostile: every length, offset, shape and dtype is
// checked before use, and the tensors must tile the data section exactly (no gaps, no
// overlaps, no trailing bytes), as the reference implementation requires. Whole
// (read_safetensors) or header first and tensors on demand (SafetensorsReader).
#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "core/json_read.hpp"
#include "io/half_float.hpp"
#include "lorafast/bf16.hpp"
#include "lorafast/safetensors.hpp"
#include "lorafast/safetensors_stream.hpp"

#include "core/text_file.hpp"

namespace lorafast {
namespace {

using nlohmann::json;
constexpr auto bad = ErrorKind::bad_input;
constexpr std::uint64_t length_prefix = 8;
constexpr std::size_t max_metadata_keys = 65536;

// How a file dtype is stored and what it loads as.
struct SourceType {
  const char* name;
  std::size_t size;
  DType loads_as;
};
constexpr SourceType source_types[] = {
    {"F32", 4, DType::f32}, {"F64", 8, DType::f64}, {"F16", 2, DType::f32}, {"BF16", 2, DType::f32}};

struct Entry {
  std::string name;
  const SourceType* type = nullptr;
  Shape shape;
  std::uint64_t begin = 0, end = 0;
};

std::string offsets_str(std::uint64_t begin, std::uint64_t end) { return cat('[', begin, ", ", end, ']'); }

std::uint64_t read_u64_le(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}

std::uint16_t read_u16_le(const std::byte* p) {
  return static_cast<std::uint16_t>(static_cast<unsigned>(p[0]) | (static_cast<unsigned>(p[1]) << 8));
}

const SourceType& find_source_type(const json& dtype, const std::string& origin, const std::string& name) {
  LF_CHECK(dtype.is_string(), bad, origin, ": tensor ", quote(name), ": dtype is a ", dtype.type_name(),
           ", not a string");
  const auto& text = dtype.get_ref<const std::string&>();
  for (const auto& type : source_types)
    if (text == type.name) return type;
  throw Error(bad, cat(origin, ": tensor ", quote(name), ": unsupported dtype ", quote(text),
                       " (supported: F32, F64, F16, BF16)"));
}

// A non-negative integer that fits `limit`, or an error naming `what` and the limit.
std::uint64_t read_count(const json& value, std::uint64_t limit, const std::string& what,
                         const char* limit_note = "") {
  LF_CHECK(value.is_number_unsigned() && value.get<std::uint64_t>() <= limit, bad, what, " is ",
           value.is_number() ? value.dump() : std::string("a ") + value.type_name(),
           ", not an integer in [0, ", limit, "]", limit_note);
  return value.get<std::uint64_t>();
}

Entry parse_entry(const std::string& name, const json& info, const std::string& origin,
                  std::uint64_t data_size) {
  const std::string where = cat(origin, ": tensor ", quote(name));
  LF_CHECK(info.is_object(), bad, where, ": entry is a ", info.type_name(), ", not an object");
  for (const char* field : {"dtype", "shape", "data_offsets"})
    LF_CHECK(info.contains(field), bad, where, ": missing \"", field, '"');

  Entry entry;
  entry.name = name;
  entry.type = &find_source_type(info["dtype"], origin, name);

  const json& shape = info["shape"];
  LF_CHECK(shape.is_array(), bad, where, ": shape is a ", shape.type_name(), ", not a list");
  constexpr auto max_i64 = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t numel = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const std::uint64_t dim = read_count(shape[i], max_i64, cat(where, ": shape[", i, ']'));
    LF_CHECK(!__builtin_mul_overflow(numel, dim, &numel) && numel <= max_i64, bad, where,
             ": shape has more elements than fit in 64 bits");
    entry.shape.push_back(static_cast<std::int64_t>(dim));
  }
  std::uint64_t need = 0;
  LF_CHECK(!__builtin_mul_overflow(numel, entry.type->size, &need), bad, where, ": ", entry.type->name, ' ',
           shape_str(entry.shape), " has more bytes than fit in 64 bits");

  const json& offsets = info["data_offsets"];
  LF_CHECK(offsets.is_array() && offsets.size() == 2, bad, where,
           ": data_offsets is not a list of two integers");
  constexpr const char* data_note = " (the size of the data section)";
  entry.begin = read_count(offsets[0], data_size, cat(where, ": data_offsets[0]"), data_note);
  entry.end = read_count(offsets[1], data_size, cat(where, ": data_offsets[1]"), data_note);
  LF_CHECK(entry.begin <= entry.end, bad, where, ": data_offsets ", offsets_str(entry.begin, entry.end),
           " begin after end");
  LF_CHECK(entry.end - entry.begin == need, bad, where, ": data_offsets ", offsets_str(entry.begin, entry.end),
           " span ", entry.end - entry.begin, " bytes but ", entry.type->name, ' ', shape_str(entry.shape),
           " needs ", need);
  return entry;
}

Metadata parse_metadata(const json& value, const std::string& origin) {
  LF_CHECK(value.is_object(), bad, origin, ": __metadata__ is a ", value.type_name(), ", not an object");
  Metadata metadata;
  for (const auto& [key, text] : value.items()) {
    LF_CHECK(text.is_string(), bad, origin, ": __metadata__ ", quote(key), " is a ", text.type_name(),
             ", not a string");
    metadata.emplace(key, text.get<std::string>());
  }
  return metadata;
}

// Parses the JSON header entry by entry: each tensor's entry is checked and dropped
// from the document as soon as it is complete, unknown entry fields are never
// stored, and shapes are capped in rank, so memory stays within a small multiple
// of what the header describes. Duplicate keys are rejected (nlohmann keeps the last).
struct Header {
  std::vector<Entry> entries;
  Metadata metadata;
};

constexpr std::size_t max_rank = 64;

Header parse_header(std::string_view text, const std::string& origin, std::uint64_t data_size) {
  using E = json::parse_event_t;
  Header header;
  std::set<std::string> names;
  std::string name;              // the top-level key being read: a tensor or __metadata__
  std::set<std::string> fields;  // the keys seen in its object
  bool known_field = false;      // the current field of a tensor entry is dtype, shape or data_offsets
  bool in_list = false;          // inside a tensor's shape or data_offsets
  std::size_t list_length = 0;
  const auto where = [&] { return name == "__metadata__" ? std::string("__metadata__") : "tensor " + quote(name); };
  const json::parser_callback_t on_event = [&](int depth, E event, json& parsed) {
    LF_CHECK(depth < max_json_depth, bad, origin, ": header nested deeper than ", max_json_depth, " levels");
    const bool skipping = depth >= 2 && name != "__metadata__" && !known_field;  // inside an ignored field
    switch (event) {
      case E::object_start:
      case E::array_start: {
        const bool is_object = event == E::object_start;
        LF_CHECK(depth > 0 || is_object, bad, origin, ": header is a JSON array, not an object");
        if (depth == 1) {
          known_field = false;
          LF_CHECK(is_object, bad, origin, ": ", where(), ": entry is a list, not an object");
          fields.clear();
        } else if (depth >= 2 && !skipping) {
          const bool list_field = !is_object && depth == 2 && name != "__metadata__";
          LF_CHECK(list_field, bad, origin, ": ", where(), ": a value is ", is_object ? "an object" : "a list",
                   name == "__metadata__" ? ", not a string" : ", not a string or a list of integers");
          in_list = true;
          list_length = 0;
        }
        break;
      }
      case E::array_end:
        if (depth == 2) in_list = false;
        break;
      case E::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (depth == 1) {
          LF_CHECK(names.insert(key).second, bad, origin, ": header: duplicate key ", quote(key));
          name = key;
        } else if (depth == 2) {
          LF_CHECK(fields.insert(key).second, bad, origin, ": ", where(), ": duplicate key ", quote(key));
          LF_CHECK(fields.size() <= max_metadata_keys, bad, origin, ": ", where(), " has more than ",
                   max_metadata_keys, " keys");
          known_field = key == "dtype" || key == "shape" || key == "data_offsets";
          // Other fields of a tensor entry are ignored, as by the reference implementation: never stored.
          return name == "__metadata__" || known_field;
        }
        break;
      }
      case E::value:
        LF_CHECK(depth != 1, bad, origin, ": tensor ", quote(name), ": entry is a ", parsed.type_name(),
                 ", not an object");
        if (in_list && depth == 3)
          LF_CHECK(++list_length <= max_rank, bad, origin, ": ", where(), ": a list longer than ", max_rank);
        break;
      case E::object_end:
        if (depth != 1) break;
        if (name == "__metadata__")
          header.metadata = parse_metadata(parsed, origin);
        else
          header.entries.push_back(parse_entry(name, parsed, origin, data_size));
        known_field = false;
        return false;  // checked and kept as an Entry: drop it from the document
      default: break;
    }
    return true;
  };
  json top;
  try {
    top = json::parse(text.begin(), text.end(), on_event);
  } catch (const json::parse_error& e) {
    // The parser quotes the offending token, which may be huge.
    throw Error(bad, cat(origin, ": header is not valid JSON (file byte ", length_prefix + e.byte - 1,
                         "): ", one_line(e.what(), 200)));
  } catch (const json::exception& e) {  // e.g. out_of_range 406: a number too large for a double
    throw Error(bad, cat(origin, ": header is not valid JSON: ", one_line(e.what(), 200)));
  }
  LF_CHECK(top.is_object(), bad, origin, ": header is a JSON ", top.type_name(), ", not an object");
  return header;
}

// The tensors must cover [0, data_size) exactly once, in any order of names.
void check_tiling(std::vector<Entry> entries, std::uint64_t data_size, std::uint64_t data_start,
                  const std::string& origin) {
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  std::uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const auto& e : entries) {
    LF_CHECK(e.begin >= covered, bad, origin, ": tensor ", quote(e.name), ": data_offsets ",
             offsets_str(e.begin, e.end), " overlap tensor ", quote(previous->name), ' ',
             offsets_str(previous->begin, previous->end));
    LF_CHECK(e.begin == covered, bad, origin, ": data bytes ", offsets_str(covered, e.begin),
             " (file offset ", data_start + covered, ") belong to no tensor (gap before tensor ",
             quote(e.name), ')');
    covered = e.end;
    previous = &e;
  }
  LF_CHECK(covered == data_size, bad, origin, ": data bytes ", offsets_str(covered, data_size),
           " (file offset ", data_start + covered, ") belong to no tensor (trailing bytes)");
}

Tensor decode(const Entry& entry, const std::byte* data) {
  Tensor tensor(entry.type->loads_as, entry.shape);
  const std::byte* src = data + entry.begin;
  const std::size_t n = static_cast<std::size_t>(tensor.numel());
  const std::string_view name = entry.type->name;
  if (entry.type->size == 2) {  // F16 or BF16, widened to F32
    const bool is_f16 = name == "F16";
    float* dst = tensor.data<float>();
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint16_t bits = read_u16_le(src + 2 * i);
      dst[i] = is_f16 ? f16_to_f32(bits) : to_f32(BFloat16{bits});
    }
  } else if (tensor.nbytes() > 0) {
    static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");
    std::memcpy(tensor.bytes(), src, tensor.nbytes());
  }
  return tensor;
}

// The header length, checked against the limit and the file's size.
std::uint64_t header_length(const std::byte* prefix, std::uint64_t file_size, const std::string& origin) {
  LF_CHECK(file_size >= length_prefix, bad, origin, ": ", file_size,
           " bytes is too short for a safetensors file (need the 8-byte header length)");
  const std::uint64_t header_size = read_u64_le(prefix);
  LF_CHECK(header_size <= max_safetensors_header, bad, origin, ": header length ", header_size,
           " exceeds the limit of ", max_safetensors_header, " bytes");
  LF_CHECK(header_size <= file_size - length_prefix, bad, origin, ": header length ", header_size,
           " runs past the end of the file (", file_size - length_prefix, " bytes follow the length)");
  return header_size;
}

// The parsed header whose tensors tile the data section exactly.
Header checked_header(std::string_view text, std::uint64_t file_size, const std::string& origin) {
  const std::uint64_t data_start = length_prefix + text.size(), data_size = file_size - data_start;
  Header header = parse_header(text, origin, data_size);
  check_tiling(header.entries, data_size, data_start, origin);
  return header;
}

}  // namespace

SafetensorsContents parse_safetensors(std::span<const std::byte> file, const std::string& origin) {
  const std::uint64_t header_size = header_length(file.data(), file.size(), origin);
  const std::uint64_t data_start = length_prefix + header_size;
  Header header = checked_header(
      std::string_view(reinterpret_cast<const char*>(file.data() + length_prefix), header_size), file.size(), origin);
  SafetensorsContents contents;
  contents.metadata = std::move(header.metadata);
  for (const auto& entry : header.entries) contents.tensors.emplace(entry.name, decode(entry, file.data() + data_start));
  return contents;
}

SafetensorsReader::SafetensorsReader(const std::filesystem::path& path) : path_(path) {
  const std::string origin = path.string();
  std::error_code ec;
  const bool regular = std::filesystem::is_regular_file(path, ec);
  const std::uint64_t size = regular ? std::filesystem::file_size(path, ec) : 0;
  std::ifstream in(path, std::ios::binary);
  LF_CHECK(regular && !ec && in, bad, origin, ": cannot read: ",
           !std::filesystem::exists(path, ec) ? "no such file" : regular ? "permission denied" : "not a regular file");
  std::array<std::byte, length_prefix> prefix{};
  in.read(reinterpret_cast<char*>(prefix.data()), static_cast<std::streamsize>(std::min(size, length_prefix)));
  const std::uint64_t header_size = header_length(prefix.data(), size, origin);
  std::string text(header_size, '\0');
  LF_CHECK(in.read(text.data(), static_cast<std::streamsize>(header_size)), bad, origin, ": read failed");
  Header header = checked_header(text, size, origin);
  data_start_ = length_prefix + header_size;
  metadata_ = std::move(header.metadata);
  for (const auto& e : header.entries) entries_.push_back({e.name, e.type->name, e.shape, e.begin, e.end});
}

std::vector<std::byte> SafetensorsReader::read_bytes(const SafetensorsEntry& entry) const {
  std::vector<std::byte> bytes(entry.nbytes());
  read_into(entry, bytes);
  return bytes;
}

void SafetensorsReader::read_into(const SafetensorsEntry& entry, std::span<std::byte> out) const {
  LF_ASSERT(out.size() == entry.nbytes());
  std::ifstream in(path_, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(data_start_ + entry.begin));
  LF_CHECK(in && in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size())), bad,
           path_.string(), ": tensor ", quote(entry.name), ": read failed (file changed or unreadable)");
}

Tensor SafetensorsReader::read(const SafetensorsEntry& entry) const {
  const std::vector<std::byte> bytes = read_bytes(entry);
  const Entry e{entry.name, &find_source_type(entry.dtype, path_.string(), entry.name), entry.shape, 0,
                entry.nbytes()};
  return decode(e, bytes.data());
}

SafetensorsContents read_safetensors(const std::filesystem::path& path) {
  // No size cap: parse_safetensors bounds the header and checks every offset.
  const std::string bytes = read_text_file(path, std::numeric_limits<std::uint64_t>::max());
  return parse_safetensors(std::as_bytes(std::span(bytes.data(), bytes.size())), path.string());
}

}  // namespace lorafast
