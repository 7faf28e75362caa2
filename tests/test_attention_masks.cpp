// The exact kernels under sliding-window and document masks (AttentionParams::window,
// cu_seqlens) against the double reference with the same masks, on awkward sizes:
// a window of 1, a window longer than the row, documents of length 1 and documents
// crossing the 128-row and 256-key tile edges; and the one-line errors of bad masks.
#include <gtest/gtest.h>

#include <algorithm>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "lorafast/error.hpp"
#include "lorafast/threads.hpp"
#include "support/attention_buffers.hpp"
#include "support/compare.hpp"

namespace lorafast {
namespace {

struct MaskCase {
  std::int64_t n, l, h, e;
  bool causal;
  std::int64_t window;
  std::vector<std::int64_t> docs;  // document lengths of every row, each summing to L; empty: one per row
};

std::string name(const MaskCase& c) {
  std::ostringstream s;
  s << "N" << c.n << "_L" << c.l << "_H" << c.h << "_E" << c.e << (c.causal ? "_causal" : "_bidir") << "_W" << c.window;
  for (auto d : c.docs) s << "_" << d;
  return s.str();
}

void PrintTo(const MaskCase& c, std::ostream* os) { *os << name(c); }

// cu_seqlens over the flattened batch: every row split into c.docs.
std::vector<std::int64_t> cu_seqlens(const MaskCase& c) {
  if (c.docs.empty()) return {};
  std::vector<std::int64_t> cu{0};
  for (std::int64_t n = 0; n < c.n; ++n)
    for (auto d : c.docs) cu.push_back(cu.back() + d);
  return cu;
}

class AttentionMasks : public ::testing::TestWithParam<MaskCase> {};

template <class T>
void expect_matches_reference(const MaskCase& c, double tolerance) {
  const testing::AttentionBuffers buffers(c.n, c.l, c.h, c.e, 1.0, 29);
  const double scale = 1.0 / std::sqrt(double(c.e));
  auto b = buffers.typed<T>(scale, c.causal);
  const auto cu = cu_seqlens(c);
  b.params.window = c.window;
  b.params.cu_seqlens = cu;
  attention_fwd(b.params);
  attention_bwd(b.params);
  // The reference sees the inputs as T holds them, one row at a time with that row's offsets.
  testing::AttentionBuffers rounded = buffers;
  for (Tensor* t : {&rounded.q, &rounded.k, &rounded.v, &rounded.d_o}) *t = t->to(dtype_of<T>()).to(DType::f64);
  Tensor o(DType::f64, {c.n, c.l, c.h * c.e}), d_q = o, d_k = o, d_v = o;
  std::vector<std::int64_t> row_cu{0};
  for (auto d : c.docs) row_cu.push_back(row_cu.back() + d);
  for (std::int64_t n = 0; n < c.n; ++n) {
    auto pr = rounded.problem(n, scale, c.causal);
    pr.window = c.window;
    if (!c.docs.empty()) pr.cu_seqlens = row_cu;
    ref::attention_fwd(pr, matrix<double>(o, n));
    ref::attention_bwd(pr, matrix<double>(rounded.d_o, n), matrix<double>(d_q, n), matrix<double>(d_k, n),
                       matrix<double>(d_v, n));
  }
  for (std::int64_t h = 0; h < c.h; ++h) {
    EXPECT_LE(testing::head_relative_error(b.o, o, h, c.e), tolerance) << "O head " << h;
    EXPECT_LE(testing::head_relative_error(b.d_q, d_q, h, c.e), tolerance) << "dQ head " << h;
    EXPECT_LE(testing::head_relative_error(b.d_k, d_k, h, c.e), tolerance) << "dK head " << h;
    EXPECT_LE(testing::head_relative_error(b.d_v, d_v, h, c.e), tolerance) << "dV head " << h;
  }
}

// Longest reduction: L keys per softmax row and per dK, dV entry, E per score.
double longest_sum(const MaskCase& c) { return static_cast<double>(std::max(c.l, c.e)); }

TEST_P(AttentionMasks, F64MatchesReference) {
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    // Double against double: only the summation order differs, n u per sum over the
    // three chained sums (as in test_exact_vs_reference.cpp).
    expect_matches_reference<double>(GetParam(), 3 * longest_sum(GetParam()) * testing::unit_roundoff_f64);
  }
  set_num_threads(0);
}

TEST_P(AttentionMasks, F32MatchesReferenceOnRoundedInputs) {
  // Worst-case float summation error n u per reduction, three chained reductions, plus
  // the 8-ulp exponential on each probability (as in test_exact_vs_reference.cpp).
  expect_matches_reference<float>(GetParam(), (3 * longest_sum(GetParam()) + 8) * testing::unit_roundoff_f32);
}

const std::vector<MaskCase> cases{
    {1, 1, 1, 3, true, 1, {}},                  // one token, window 1
    {2, 97, 3, 5, true, 1, {}},                 // window 1: each row sees itself only
    {1, 300, 2, 7, true, 1000, {}},             // window longer than the row: plain causal
    {1, 1025, 1, 64, true, 300, {}},            // windows across row blocks and key tiles
    {2, 513, 2, 5, true, 129, {}},              // a window one past a row block
    {2, 400, 2, 5, true, 0, {1, 255, 1, 143}},  // documents of length 1, across tile edges
    {1, 400, 1, 72, false, 0, {127, 2, 270, 1}},  // bidirectional inside documents
    {1, 700, 2, 5, true, 200, {300, 1, 399}},   // window and documents combined
    {3, 7, 1, 1, true, 2, {3, 4}},
};

INSTANTIATE_TEST_SUITE_P(AwkwardSizes, AttentionMasks, ::testing::ValuesIn(cases),
                         [](const auto& info) { return name(info.param); });

// Each bad mask is refused by checked() with its own error line.
TEST(AttentionMasks, BadMasksAreUsageErrors) {
  const testing::AttentionBuffers buffers(2, 4, 1, 2, 1.0, 1);
  const auto expect_error = [&](std::int64_t window, bool causal, std::vector<std::int64_t> cu, const char* says) {
    auto b = buffers.typed<double>(0.5, causal);
    b.params.window = window;
    b.params.cu_seqlens = cu;
    try {
      attention_fwd(b.params);
      ADD_FAILURE() << "no error for " << says;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  expect_error(-1, true, {}, "window must be >= 0");
  expect_error(2, false, {}, "sliding window needs causal");
  expect_error(0, true, {1, 4, 8}, "must start at 0");
  expect_error(0, true, {0, 4, 7}, "must end at batch * seq_len = 8");
  expect_error(0, true, {0, 4, 4, 8}, "must increase");
  expect_error(0, true, {0, 3, 8}, "crosses the row boundary 4");
  expect_error(0, true, {0}, "must end at");
}

}  // namespace
}  // namespace lorafast
