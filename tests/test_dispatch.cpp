// The per-head dispatch: clear cases, the reasons it gives, and the documented errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
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

// A request with the shape it is decided for.
struct Request : AttentionRequest, AttentionShape {};

Request request(Method method, std::int64_t seq_len, std::int64_t head_dim = 8) {
  Request r;
  r.method = method;
  r.seq_len = seq_len;
  r.head_dim = head_dim;
  return r;
}

std::vector<HeadDecision> decide(const std::vector<HeadScores>& heads, const Request& r) {
  return lorafast::decide(heads, r, r);
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

// The terms of the calibrated model: quadratic exact work halved by the mask, fast
// work linear in N*L, a causal in-chunk term, chained another factor E.
TEST(CostModel, Shapes) {
  CostModel c;
  c.exact_fixed = c.fast_fixed = 0;  // per-call constants would break the scaling checks
  EXPECT_DOUBLE_EQ(c.exact_seconds(1, 1000, 8, true), c.exact_seconds(1, 1000, 8, false) / 2);
  EXPECT_DOUBLE_EQ(c.exact_seconds(1, 2000, 8, false), 4 * c.exact_seconds(1, 1000, 8, false));
  EXPECT_DOUBLE_EQ(c.fast_seconds(1, 2000, 8, 495, false), 2 * c.fast_seconds(1, 1000, 8, 495, false));
  EXPECT_DOUBLE_EQ(c.fast_seconds(3, 1000, 8, 495, false), 3 * c.fast_seconds(1, 1000, 8, 495, false));
  EXPECT_GT(c.fast_seconds(1, 1000, 8, 495, true), c.fast_seconds(1, 1000, 8, 495, false));  // chunk term
  EXPECT_DOUBLE_EQ(c.chained_seconds(1, 1000, 8, 495, false),
                   8 * c.chained_factor * c.fast_seconds(1, 1000, 8, 495, false));
  // The defaults' crossover for a bounded E = 8 head at degree 4 (F = 495) lies
  // between L = 512 and L = 4096, where calibration measured it.
  const CostModel d;
  EXPECT_GT(d.fast_seconds(1, 512, 8, 495, true), d.exact_seconds(1, 512, 8, true));
  EXPECT_LT(d.fast_seconds(1, 4096, 8, 495, true), d.exact_seconds(1, 4096, 8, true));
}

// Samples generated from known coefficients are fitted back to them (relative 1e-9:
// a 4 x 4 solve of well-scaled normal equations in double).
TEST(CostModel, FitRecoversKnownCoefficients) {
  CostModel truth;
  truth.exact_quadratic = 6e-11, truth.exact_scores = 9e-10, truth.exact_fixed = 5e-5;
  truth.fast_state = 2e-10, truth.fast_map = 1e-10, truth.fast_chunk = 3e-10, truth.fast_fixed = 1e-5;
  truth.chained_factor = 0.4;
  std::vector<CostSample> samples;
  for (bool causal : {false, true})
    for (std::int64_t e : {8, 16})
      for (std::int64_t l : {512, 4096, 16384}) {
        CostSample x{1, l, e, 0, causal, truth.exact_seconds(1, l, e, causal)};
        samples.push_back(x);
        for (std::int64_t f : {45, 495, 3003}) {
          CostSample y{1, l, e, f, causal, truth.fast_seconds(1, l, e, f, causal)};
          samples.push_back(y);
          CostSample z{1, l, e, f, causal, truth.chained_seconds(1, l, e, f, causal), true};
          samples.push_back(z);
        }
      }
  const CostModel fit = fit_cost_model(samples, 3);
  EXPECT_EQ(fit.threads, 3);
  for (auto [got, want] : {std::pair{fit.exact_quadratic, truth.exact_quadratic}, {fit.exact_scores, truth.exact_scores},
                           {fit.exact_fixed, truth.exact_fixed}, {fit.fast_state, truth.fast_state},
                           {fit.fast_map, truth.fast_map}, {fit.fast_chunk, truth.fast_chunk},
                           {fit.fast_fixed, truth.fast_fixed}, {fit.chained_factor, truth.chained_factor}})
    EXPECT_NEAR(got, want, 1e-9 * want);
}

// A term the data pull below zero is dropped (clamped to 0), not left negative.
TEST(CostModel, FitKeepsCoefficientsNonNegative) {
  std::vector<CostSample> samples;
  for (std::int64_t l : {1000, 2000, 4000, 8000})  // time falls with L: only a constant fits
    samples.push_back({1, l, 8, 0, false, 1.0 / static_cast<double>(l) + 1e-3});
  const CostModel fit = fit_cost_model(samples, 1);
  EXPECT_GE(fit.exact_quadratic, 0.0);
  EXPECT_GE(fit.exact_scores, 0.0);
  EXPECT_GT(fit.exact_fixed, 0.0);
}

TEST(CostModel, SavesLoadsAndRejectsBadFiles) {
  const std::string dir = ::testing::TempDir() + "lorafast_cost_model";
  const std::string path = dir + "/sub/cost_model.json";
  std::filesystem::remove_all(dir);
  EXPECT_EQ(load_cost_model(path).fast_state, CostModel{}.fast_state);  // missing: defaults
  CostModel m;
  m.fast_state = 1.25e-10, m.exact_scores = 7.5e-10, m.chained_factor = 0.5, m.threads = 7;
  save_cost_model(m, path);
  const CostModel back = load_cost_model(path);
  EXPECT_EQ(back.fast_state, m.fast_state);
  EXPECT_EQ(back.exact_scores, m.exact_scores);
  EXPECT_EQ(back.chained_factor, 0.5);
  EXPECT_EQ(back.threads, 7);
  for (const char* text : {"not json", "[1, 2]", "{\"fast_state\": 1}", "{\"fast_state\": -1}"}) {
    std::ofstream(path) << text;
    EXPECT_EQ(error_kind_of([&] { load_cost_model(path); }), ErrorKind::bad_input) << text;
  }
  std::filesystem::remove_all(dir);
}

// Chained priced far above fast, so auto's choice among approximate methods is fast.
Request fast_preferred(Request r) {
  r.cost.chained_factor = 1e6;
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

// The same head under a sliding window or documents: the surrogates cannot honour
// the mask, so auto stays exact and says why, and a forced surrogate is refused.
TEST(Decide, MasksKeepAutoExactAndRefuseSurrogates) {
  auto r = fast_preferred(request(Method::automatic, 65536));
  r.masked = true;
  const auto d = decide({head_with(0.1)}, r);
  EXPECT_EQ(d[0].method, Method::exact);
  EXPECT_TRUE(contains(d[0].reason, "only exact honours the sliding-window or document mask")) << d[0].reason;
  for (Method m : {Method::fast, Method::chained}) {
    r.method = m;
    std::string message;
    EXPECT_EQ(error_kind_of([&] { decide({head_with(0.1)}, r); }, &message), ErrorKind::cannot_meet);
    EXPECT_TRUE(contains(message, "cannot honour the sliding-window or document mask; `method` exact can")) << message;
  }
}

// Under bf16 products a surrogate chosen for a head says it computes in f32; exact
// reasons and f32 shapes do not.
TEST(Decide, SurrogatesOnBf16InputsSayTheyComputeInF32) {
  auto r = fast_preferred(request(Method::automatic, 65536));
  r.bf16_products = true;
  const auto chosen = decide({head_with(0.1)}, r);
  EXPECT_EQ(chosen[0].method, Method::fast);
  EXPECT_TRUE(contains(chosen[0].reason, "computes in f32")) << chosen[0].reason;
  r.method = Method::chained;
  EXPECT_TRUE(contains(decide({head_with(0.1)}, r)[0].reason, "computes in f32"));
  r.method = Method::automatic;
  EXPECT_FALSE(contains(decide({head_with(40.0)}, r)[0].reason, "computes in f32"));  // stays exact
  r.bf16_products = false;
  EXPECT_FALSE(contains(decide({head_with(0.1)}, r)[0].reason, "computes in f32"));
}

TEST(Decide, AutoTakesChainedWhenItIsCheaper) {
  auto r = request(Method::automatic, 65536);
  r.cost.chained_factor = 1e-6;
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
    EXPECT_TRUE(contains(message, "`degree` 5")) << message;
  }
}

TEST(Decide, ImpossibleFastIsCannotMeetNamingExact) {
  std::string message;
  EXPECT_EQ(error_kind_of([&] { decide({head_with(0.1), head_with(40.0)}, request(Method::fast, 4096)); }, &message),
            ErrorKind::cannot_meet);
  EXPECT_TRUE(contains(message, "head 1") && contains(message, "`method` exact can")) << message;

  auto r = request(Method::chained, 4096, 64);
  r.max_features = 1000;
  EXPECT_EQ(error_kind_of([&] { decide({head_with(1.0)}, r); }, &message), ErrorKind::cannot_meet);
  EXPECT_TRUE(contains(message, "head 0") && contains(message, "memory cap") && contains(message, "`method` exact can"))
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
  r.method = Method::automatic;
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
