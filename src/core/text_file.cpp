#include "core/text_file.hpp"

#include <fstream>
#include <iterator>

#include "lorafast/error.hpp"

namespace lorafast {

std::string read_text_file(const std::filesystem::path& path, std::uint64_t max_bytes) {
  constexpr auto bad = ErrorKind::bad_input;
  const std::string origin = path.string();
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  LF_CHECK(std::filesystem::exists(status), bad, origin, ": cannot open: no such file");
  LF_CHECK(!std::filesystem::is_directory(status), bad, origin, ": cannot open: is a directory");
  std::ifstream in(path, std::ios::binary);
  LF_CHECK(in.is_open(), bad, origin, ": cannot open for reading");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  LF_CHECK(in && size >= 0, bad, origin, ": cannot determine the file size");
  LF_CHECK(static_cast<std::uint64_t>(size) <= max_bytes, bad, origin, ": ", size, " bytes, more than the ",
           max_bytes, " allowed");
  in.seekg(0, std::ios::beg);
  std::string text(static_cast<std::size_t>(size), '\0');
  in.read(text.data(), size);
  LF_CHECK(in.gcount() == size, bad, origin, ": read ", in.gcount(), " of ", size, " bytes");
  return text;
}

}  // namespace lorafast
