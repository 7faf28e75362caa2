#include "support/sweep.hpp"

#include <algorithm>
#include <utility>

namespace lorafast::testing {

std::vector<CaseSpec> awkward_sweep() {
  const std::vector<std::int64_t> lengths{1, 7, 97, 128, 1025};
  const std::vector<std::pair<std::int64_t, std::int64_t>> widths{{1, 1}, {5, 3}, {64, 1}, {72, 3}};
  const std::vector<std::string> adapted{"qv", "qkv", "k", "v"};
  std::vector<CaseSpec> cases;
  int counter = 0;
  for (auto l : lengths)
    for (auto [e, h] : widths) {
      if (l == 1025 && e * h > 64) continue;
      CaseSpec spec;
      spec.seq_len = l;
      spec.head_dim = e;
      spec.heads = h;
      spec.causal = counter % 2 == 0;
      spec.rank = counter % 3 == 0 ? 1 : 8;
      spec.batch = counter % 4 == 1 ? 2 : 1;
      spec.adapted = adapted[counter % adapted.size()];
      // One key: softmax is the constant 1, so the q and k gradients vanish and a
      // relative error against them measures rounding noise only. Adapt v too
      // (SingleKey.ScoreGradientsVanish checks the zero itself).
      if (l == 1 && spec.adapted.find('v') == std::string::npos) spec.adapted += "v";
      spec.seed = static_cast<std::uint64_t>(counter);
      cases.push_back(spec);
      ++counter;
    }
  return cases;
}

std::string test_name(const CaseSpec& spec) {
  auto name = spec.name();
  std::replace(name.begin(), name.end(), '/', '_');
  return name;
}

}  // namespace lorafast::testing
