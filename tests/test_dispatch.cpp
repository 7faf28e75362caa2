// The per-head dispatch: clear cases, the reasons it gives, and the documented errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "lorafast/dispatch.hpp"
#include "lorafast/error.hpp"

namespace lorafast {
namespace {

HeadScores head_with(double score_bound) {
  HeadScores h;
  h.gamma_q = h.gamma_k = std::sqrt(score_bound);
  h.score_bound = h.raw_score_bound = score_bound;
  return h;
}

DispatchRequest request(Method method, std::int64_t seq_len, std::int64_t head_dim = 8) {
  DispatchRequest r;
  r.requested = method;
  r.seq_len = seq_len;
  r.head_dim = head_dim;
  return r;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

ErrorKind error_kind_of(const std::function<void()>& call, std::string* message = nullptr) {
  try {
    call();
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.kind();
  }
  ADD_FAILURE() << "no error";
  return ErrorKind::usage;
}

TEST(Method, NamesRoundTrip) {
  for (Method m : {Method::exact, Method::fast, Method::chained, Method::automatic})
    EXPECT_EQ(parse_method(method_name(m)), m);
  EXPECT_EQ(method_name(Method::automatic), "auto");
  EXPECT_EQ(error_kind_of([] { parse_method("quick"); }), ErrorKind::usage);
}

TEST(CostModel, Shapes) {
  const CostModel c;
  EXPECT_DOUBLE_EQ(c.exact_seconds(1, 1000, 8, true), c.exact_seconds(1, 1000, 8, false) / 2);
  EXPECT_DOUBLE_EQ(c.exact_seconds(1, 2000, 8, false), 4 * c.exact_seconds(1, 1000, 8, false));
  EXPECT_DOUBLE_EQ(c.fast_seconds(1, 2000, 8, 495, false), 2 * c.fast_seconds(1, 1000, 8, 495, false));
  EXPECT_DOUBLE_EQ(c.fast_seconds(3, 1000, 8, 495, false), 3 * c.fast_seconds(1, 1000, 8, 495, false));
  EXPECT_GT(c.fast_seconds(1, 1000, 8, 495, true), c.fast_seconds(1, 1000, 8, 495, false));  // chunk term
  EXPECT_DOUBLE_EQ(c.chained_seconds(1, 1000, 8, 495, false), 8 * c.fast_seconds(1, 1000, 8, 495, false));
}

// Chained priced far above fast, so auto's choice among approximate methods is fast.
DispatchRequest fast_preferred(DispatchRequest r) {
  r.cost.chained_seconds_per_unit = 1e6 * r.cost.fast_seconds_per_unit;
  return r;
}

TEST(Decide, SmallScoresAndLongSequencesGoFast) {
  const auto d = decide({head_with(0.1)}, fast_preferred(request(Method::automatic, 65536)));
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].method, Method::fast);
  EXPECT_EQ(d[0].degree, 4);      // degree_for(0.1, 1e-3, fast)
  EXPECT_EQ(d[0].features, 495);  // C(8 + 4, 4)
  EXPECT_GT(d[0].error_bound, 0.0);
  EXPECT_GE(d[0].gradient_bound, d[0].error_bound);
  EXPECT_LE(d[0].gradient_bound, 1e-3);
  EXPECT_LT(d[0].cost_fast, d[0].cost_exact);
  EXPECT_TRUE(contains(d[0].reason, "fast:") && contains(d[0].reason, "predicted")) << d[0].reason;
}

TEST(Decide, AutoTakesChainedWhenItIsCheaper) {
  auto r = request(Method::automatic, 65536);
  r.cost.chained_seconds_per_unit = 1e-6 * r.cost.fast_seconds_per_unit;
  const auto d = decide({head_with(0.5)}, r);
  EXPECT_EQ(d[0].method, Method::chained);
  EXPECT_EQ(d[0].degree, 4);  // chained certifies G = 0.5 at degree 4, fast needs 6
  EXPECT_LE(d[0].gradient_bound, r.eps);
  EXPECT_TRUE(contains(d[0].reason, "chained:")) << d[0].reason;
}

TEST(Decide, ShortSequencesStayExact) {
  const auto d = decide({head_with(0.1)}, request(Method::automatic, 16));
  EXPECT_EQ(d[0].method, Method::exact);
  EXPECT_EQ(d[0].error_bound, 0.0);
  EXPECT_GT(d[0].cost_fast, d[0].cost_exact);
  EXPECT_TRUE(contains(d[0].reason, "exact:") && contains(d[0].reason, "predicted")) << d[0].reason;
}

TEST(Decide, LargeScoresStayExactAndSayWhy) {
  const auto d = decide({head_with(40.0)}, request(Method::automatic, 1 << 20));
  EXPECT_EQ(d[0].method, Method::exact);
  EXPECT_EQ(d[0].degree, -1);
  EXPECT_EQ(d[0].features, -1);
  EXPECT_EQ(d[0].cost_fast, std::numeric_limits<double>::infinity());
  EXPECT_TRUE(contains(d[0].reason, "exceeds what degree <= 64 can certify")) << d[0].reason;
}

TEST(Decide, FeatureCapKeepsWideHeadsExact) {
  // E = 64 at G = 1 needs degree 8 for 1e-3: F = C(72, 8), about 1.2e10 > 2^16.
  auto r = request(Method::automatic, 1 << 24, 64);
  r.max_features = 1 << 16;
  const auto d = decide({head_with(1.0)}, r);
  EXPECT_EQ(d[0].method, Method::exact);
  EXPECT_GT(d[0].features, r.max_features);
  EXPECT_TRUE(contains(d[0].reason, "memory cap")) << d[0].reason;
}

TEST(Decide, HeadsAreDecidedIndependently) {
  const auto d =
      decide({head_with(0.1), head_with(40.0), head_with(0.2)}, fast_preferred(request(Method::automatic, 65536)));
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d[0].method, Method::fast);
  EXPECT_EQ(d[1].method, Method::exact);
  EXPECT_EQ(d[2].method, Method::fast);
}

TEST(Decide, ExactRequestedIsExact) {
  const auto d = decide({head_with(0.1)}, request(Method::exact, 65536));
  EXPECT_EQ(d[0].method, Method::exact);
  EXPECT_EQ(d[0].error_bound, 0.0);
  EXPECT_GE(d[0].degree, 2);  // what fast would need, for the report
}

TEST(Decide, ForcedOddDegreeIsBadInput) {
  for (Method m : {Method::fast, Method::chained, Method::automatic, Method::exact}) {
    auto r = request(m, 1024);
    r.degree = 5;
    std::string message;
    EXPECT_EQ(error_kind_of([&] { decide({head_with(0.1)}, r); }, &message), ErrorKind::bad_input);
    EXPECT_TRUE(contains(message, "--degree 5")) << message;
  }
}

TEST(Decide, ImpossibleFastIsCannotMeetNamingExact) {
  std::string message;
  EXPECT_EQ(error_kind_of([&] { decide({head_with(0.1), head_with(40.0)}, request(Method::fast, 4096)); }, &message),
            ErrorKind::cannot_meet);
  EXPECT_TRUE(contains(message, "head 1") && contains(message, "--method exact")) << message;

  auto r = request(Method::chained, 4096, 64);
  r.max_features = 1000;
  EXPECT_EQ(error_kind_of([&] { decide({head_with(1.0)}, r); }, &message), ErrorKind::cannot_meet);
  EXPECT_TRUE(contains(message, "head 0") && contains(message, "memory cap") && contains(message, "--method exact"))
      << message;
}

TEST(Decide, ForcedDegreeSkipsTheEpsCheckButReportsItsBound) {
  auto r = request(Method::fast, 4096);
  r.degree = 2;
  const auto d = decide({head_with(3.0)}, r);
  EXPECT_EQ(d[0].method, Method::fast);
  EXPECT_EQ(d[0].degree, 2);
  EXPECT_EQ(d[0].features, 45);
  EXPECT_EQ(d[0].error_bound, probability_error_bound(taylor_relative_error(3.0, 2)));
  EXPECT_EQ(d[0].gradient_bound, gradient_error_bound(3.0, 2, GradientRoute::fast));
  EXPECT_TRUE(contains(d[0].reason, "not enforced")) << d[0].reason;

  // auto still only runs what is certified within eps.
  r.requested = Method::automatic;
  r.seq_len = 1 << 20;
  const auto a = decide({head_with(3.0)}, r);
  EXPECT_EQ(a[0].method, Method::exact);
  EXPECT_TRUE(contains(a[0].reason, "certifies only")) << a[0].reason;
}

TEST(Decide, ChainedRequestedCostsTheChainedPath) {
  const auto r = request(Method::chained, 65536);
  const auto d = decide({head_with(0.5)}, r);
  EXPECT_EQ(d[0].method, Method::chained);
  EXPECT_DOUBLE_EQ(d[0].cost_fast, r.cost.chained_seconds(1, 65536, 8, d[0].features, false));
  EXPECT_LE(d[0].gradient_bound, r.eps);
  EXPECT_EQ(d[0].gradient_bound, d[0].error_bound);  // chained: the weights are P~ itself
}

TEST(Decide, BadEpsIsUsage) {
  auto r = request(Method::automatic, 64);
  r.eps = 0;
  EXPECT_EQ(error_kind_of([&] { decide({head_with(0.1)}, r); }), ErrorKind::usage);
}

}  // namespace
}  // namespace lorafast
