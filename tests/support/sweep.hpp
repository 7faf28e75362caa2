// The awkward-size sweep of DESIGN.md item 7 as named cases.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "lorafast/case_spec.hpp"

namespace lorafast::testing {

// L in {1, 7, 97, 128, 1025} x (E, H) in {(1,1), (5,3), (64,1), (72,3)}, with causal,
// rank (1, 8), batch (1, 2) and the adapted set varied across the grid so every value
// meets every other without the full product. L = 1025 keeps the smaller widths to
// keep the double reference quick. L = 1 cases always adapt v (see sweep.cpp).
std::vector<CaseSpec> awkward_sweep();

// gtest parameter names cannot hold '/': "grad/causal/N1/L7/..." -> "grad_causal_N1_L7_...".
std::string test_name(const CaseSpec& spec);

}  // namespace lorafast::testing

namespace lorafast {
// gtest prints parameters through PrintTo, found by argument-dependent lookup.
inline void PrintTo(const CaseSpec& spec, std::ostream* out) { *out << spec.name(); }

}  // namespace lorafast
