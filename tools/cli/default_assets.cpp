#include "default_assets.hpp"

#include <system_error>
#include <vector>

#include "lorafast/error.hpp"

namespace lorafast::cli {

DefaultAssets find_default_assets() {
  namespace fs = std::filesystem;
  std::vector<fs::path> candidates;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path dir = exe.parent_path();
    candidates = {dir, dir.parent_path(), dir.parent_path() / "share" / "lorafast"};
  }
  candidates.emplace_back(LORAFAST_SOURCE_DIR);
  std::string searched;
  for (const auto& root : candidates) {
    const DefaultAssets assets{root};
    if (fs::is_regular_file(assets.model() / "config.json", ec)) return assets;
    searched += (searched.empty() ? "" : ", ") + assets.model().string();
  }
  throw Error(ErrorKind::bad_input, cat("the embedded default model is missing (looked for ", searched,
                                        "); pass --model DIR and --data FILE"));
}

}  // namespace lorafast::cli
