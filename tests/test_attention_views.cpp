// Strided views and grouped-query attention in AttentionParams: every method (and a
// plan mixing them inside one group) must give, on q, k, v read through strides or
// shared by a group of query heads, what it gives on packed multi-head inputs with
// each K/V head repeated for its group (whose d_k, d_v summed over the group are the
// grouped gradients). The packed multi-head paths are checked against the reference
// elsewhere (test_exact_vs_reference, test_fast_attention, test_chained).
//
// Tolerance: both sides run the same arithmetic on the same values; they differ in
// the order of the sums (a group's d_k summed inside the kernel or afterwards, copies
// made or not), so in double the gap is a rounding error of a few L-term sums:
// 64 L u relative (u = 2^-53) bounds it with room.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "lorafast/planned_attention.hpp"
#include "lorafast/certificate.hpp"
#include "support/bad_input.hpp"
#include "support/compare.hpp"

namespace lorafast {
namespace {

using Buffer = std::vector<double>;

Buffer random_buffer(std::size_t size, std::uint64_t seed, double std_dev) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, std_dev);
  Buffer out(size);
  for (double& x : out) x = normal(rng);
  return out;
}

// Packed [N, L, heads * E] <-> SDPA's [N, heads, L, E].
Buffer to_sdpa(const Buffer& packed, std::int64_t n, std::int64_t l, std::int64_t heads, std::int64_t e) {
  Buffer out(packed.size());
  for (std::int64_t b = 0; b < n; ++b)
    for (std::int64_t i = 0; i < l; ++i)
      for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t m = 0; m < e; ++m)
          out[((b * heads + h) * l + i) * e + m] = packed[((b * l + i) * heads + h) * e + m];
  return out;
}

// Each K/V head repeated for the `group` query heads it serves: [N, L, H_kv E] -> [N, L, H E].
Buffer repeat_heads(const Buffer& kv, std::int64_t rows, std::int64_t kv_heads, std::int64_t group, std::int64_t e) {
  Buffer out(kv.size() * group);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t h = 0; h < kv_heads * group; ++h)
      for (std::int64_t m = 0; m < e; ++m) out[(r * kv_heads * group + h) * e + m] = kv[(r * kv_heads + h / group) * e + m];
  return out;
}

// The reverse for gradients: each group's heads summed.
Buffer sum_groups(const Buffer& d, std::int64_t rows, std::int64_t kv_heads, std::int64_t group, std::int64_t e) {
  Buffer out(d.size() / group, 0.0);
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t h = 0; h < kv_heads * group; ++h)
      for (std::int64_t m = 0; m < e; ++m) out[(r * kv_heads + h / group) * e + m] += d[(r * kv_heads * group + h) * e + m];
  return out;
}

double relative_gap(const Buffer& a, const Buffer& b) {
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    diff += (a[i] - b[i]) * (a[i] - b[i]);
    norm += b[i] * b[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

struct Outputs {
  Buffer o, d_q, d_k, d_v;
};

struct Problem {
  std::int64_t n, l, heads, kv_heads, e;
  bool causal;
  Buffer q, k, v, d_o;  // packed; k, v with kv_heads heads

  Problem(std::int64_t n_, std::int64_t l_, std::int64_t h, std::int64_t h_kv, std::int64_t e_, bool causal_)
      : n(n_), l(l_), heads(h), kv_heads(h_kv), e(e_), causal(causal_) {
    const std::size_t query = n * l * h * e, key = n * l * h_kv * e;
    // Scores of standard deviation about 1 (beta = 1/sqrt(E)): degree 4 is accurate,
    // so a surrogate head on the wrong K/V head would show far above the tolerance.
    q = random_buffer(query, 1, 1.0);
    k = random_buffer(key, 2, 1.0);
    v = random_buffer(key, 3, 1.0);
    d_o = random_buffer(query, 4, 1.0);
  }
  std::int64_t group() const { return heads / kv_heads; }

  AttentionParams<double> params() const {
    AttentionParams<double> p;
    p.batch = n;
    p.seq_len = l;
    p.heads = heads;
    p.kv_heads = kv_heads;
    p.head_dim = e;
    p.scale = 1.0 / std::sqrt(static_cast<double>(e));
    p.causal = causal;
    return p;
  }
};

std::vector<HeadDecision> plan_of(const std::vector<Method>& methods, std::int64_t heads) {
  std::vector<HeadDecision> plan(static_cast<std::size_t>(heads));
  for (std::int64_t h = 0; h < heads; ++h) {
    plan[h].method = methods[h % methods.size()];
    plan[h].degree = plan[h].method == Method::exact ? -1 : 4;
  }
  return plan;
}

// Runs the planned forward and backward on p, whose input pointers are set; the
// outputs go to packed buffers.
Outputs run(AttentionParams<double> p, const std::vector<HeadDecision>& plan) {
  const std::int64_t kv = p.kv_head_count();
  Outputs out{Buffer(p.batch * p.seq_len * p.heads * p.head_dim), Buffer(p.batch * p.seq_len * p.heads * p.head_dim),
              Buffer(p.batch * p.seq_len * kv * p.head_dim, 7.0), Buffer(p.batch * p.seq_len * kv * p.head_dim, 7.0)};
  Buffer lse(p.batch * p.heads * p.seq_len);
  p.o = out.o.data();
  p.lse = lse.data();
  p.d_q = out.d_q.data();
  p.d_k = out.d_k.data();  // 7.0 everywhere: stale values must be overwritten
  p.d_v = out.d_v.data();
  planned_attention_fwd(p, plan);
  planned_attention_bwd(p, plan);
  return out;
}

// The same plan on packed multi-head inputs with the K/V heads repeated.
Outputs run_repeated(const Problem& pr, const std::vector<HeadDecision>& plan) {
  const std::int64_t rows = pr.n * pr.l;
  const Buffer k = repeat_heads(pr.k, rows, pr.kv_heads, pr.group(), pr.e);
  const Buffer v = repeat_heads(pr.v, rows, pr.kv_heads, pr.group(), pr.e);
  AttentionParams<double> p = pr.params();
  p.kv_heads = 0;
  p.q = pr.q.data();
  p.k = k.data();
  p.v = v.data();
  p.d_o = pr.d_o.data();
  Outputs out = run(p, plan);
  out.d_k = sum_groups(out.d_k, rows, pr.kv_heads, pr.group(), pr.e);
  out.d_v = sum_groups(out.d_v, rows, pr.kv_heads, pr.group(), pr.e);
  return out;
}

void expect_close(const Outputs& got, const Outputs& want, std::int64_t l, const std::string& name) {
  const double bound = 64 * static_cast<double>(l) * testing::unit_roundoff_f64;
  EXPECT_LE(relative_gap(got.o, want.o), bound) << name << " o";
  EXPECT_LE(relative_gap(got.d_q, want.d_q), bound) << name << " d_q";
  EXPECT_LE(relative_gap(got.d_k, want.d_k), bound) << name << " d_k";
  EXPECT_LE(relative_gap(got.d_v, want.d_v), bound) << name << " d_v";
}

struct Sizes {
  std::int64_t n, l, heads, kv_heads, e;
};

// L crosses the exact kernels' 128-row and 256-key tiles and the causal chunks; with
// 2 threads, N * H_kv in {1, 3} runs the backward by row blocks and {2, 4} by heads.
const std::vector<Sizes> sizes = {{1, 7, 4, 1, 5}, {1, 300, 6, 3, 8}, {2, 97, 4, 2, 8}, {2, 130, 3, 3, 4}, {1, 1, 2, 1, 3}};

const std::vector<std::pair<std::string, std::vector<Method>>> plans = {
    {"exact", {Method::exact}},
    {"fast", {Method::fast}},
    {"chained", {Method::chained}},
    {"mixed", {Method::exact, Method::fast, Method::chained}}};

std::string name_of(const Sizes& s, bool causal, const std::string& plan) {
  return "N" + std::to_string(s.n) + "/L" + std::to_string(s.l) + "/H" + std::to_string(s.heads) + "/Hkv" +
         std::to_string(s.kv_heads) + "/E" + std::to_string(s.e) + (causal ? "/causal/" : "/bidir/") + plan;
}

TEST(AttentionViews, GroupedHeadsEqualRepeatedHeads) {
  for (const Sizes& s : sizes)
    for (bool causal : {false, true})
      for (const auto& [plan_name, methods] : plans) {
        const Problem pr(s.n, s.l, s.heads, s.kv_heads, s.e, causal);
        const auto plan = plan_of(methods, s.heads);
        AttentionParams<double> p = pr.params();
        p.q = pr.q.data();
        p.k = pr.k.data();
        p.v = pr.v.data();
        p.d_o = pr.d_o.data();
        expect_close(run(p, plan), run_repeated(pr, plan), s.l, name_of(s, causal, plan_name));
      }
}

// q, k, v, d_o and every output in SDPA's [N, H, L, E] layout, read and written
// through strides, against the packed layout.
TEST(AttentionViews, SdpaLayoutEqualsPacked) {
  for (const Sizes& s : sizes)
    for (bool causal : {false, true})
      for (const auto& [plan_name, methods] : plans) {
        const Problem pr(s.n, s.l, s.heads, s.kv_heads, s.e, causal);
        const auto plan = plan_of(methods, s.heads);
        AttentionParams<double> packed = pr.params();
        packed.q = pr.q.data(), packed.k = pr.k.data(), packed.v = pr.v.data(), packed.d_o = pr.d_o.data();
        const Outputs want = run(packed, plan);

        const Buffer q = to_sdpa(pr.q, s.n, s.l, s.heads, s.e), d_o = to_sdpa(pr.d_o, s.n, s.l, s.heads, s.e);
        const Buffer k = to_sdpa(pr.k, s.n, s.l, s.kv_heads, s.e), v = to_sdpa(pr.v, s.n, s.l, s.kv_heads, s.e);
        AttentionParams<double> p = pr.params();
        const HeadStrides query{s.heads * s.l * s.e, s.e, s.l * s.e}, key{s.kv_heads * s.l * s.e, s.e, s.l * s.e};
        p.q = q.data(), p.k = k.data(), p.v = v.data(), p.d_o = d_o.data();
        p.q_strides = p.d_o_strides = p.o_strides = p.d_q_strides = query;
        p.k_strides = p.v_strides = p.d_k_strides = p.d_v_strides = key;
        const Outputs got = run(p, plan);
        const Outputs want_sdpa{to_sdpa(want.o, s.n, s.l, s.heads, s.e), to_sdpa(want.d_q, s.n, s.l, s.heads, s.e),
                                to_sdpa(want.d_k, s.n, s.l, s.kv_heads, s.e),
                                to_sdpa(want.d_v, s.n, s.l, s.kv_heads, s.e)};
        expect_close(got, want_sdpa, s.l, name_of(s, causal, plan_name) + "/sdpa");
      }
}

// q, k, v as column blocks of one fused projection [N, L, (H + 2 H_kv) E], as a
// Llama or GPT-2 layer produces them, against separate packed tensors.
TEST(AttentionViews, FusedProjectionEqualsPacked) {
  for (const Sizes& s : sizes)
    for (bool causal : {false, true})
      for (const auto& [plan_name, methods] : plans) {
        const Problem pr(s.n, s.l, s.heads, s.kv_heads, s.e, causal);
        const auto plan = plan_of(methods, s.heads);
        AttentionParams<double> packed = pr.params();
        packed.q = pr.q.data(), packed.k = pr.k.data(), packed.v = pr.v.data(), packed.d_o = pr.d_o.data();
        const Outputs want = run(packed, plan);

        const std::int64_t dq = s.heads * s.e, dkv = s.kv_heads * s.e, width = dq + 2 * dkv, rows = s.n * s.l;
        Buffer fused(rows * width);
        for (std::int64_t r = 0; r < rows; ++r) {
          std::copy(pr.q.begin() + r * dq, pr.q.begin() + (r + 1) * dq, fused.begin() + r * width);
          std::copy(pr.k.begin() + r * dkv, pr.k.begin() + (r + 1) * dkv, fused.begin() + r * width + dq);
          std::copy(pr.v.begin() + r * dkv, pr.v.begin() + (r + 1) * dkv, fused.begin() + r * width + dq + dkv);
        }
        AttentionParams<double> p = pr.params();
        p.q = fused.data(), p.k = fused.data() + dq, p.v = fused.data() + dq + dkv, p.d_o = pr.d_o.data();
        p.q_strides = p.k_strides = p.v_strides = {s.l * width, width, s.e};
        expect_close(run(p, plan), want, s.l, name_of(s, causal, plan_name) + "/fused");
      }
}

TEST(AttentionViews, PlanMeasuresEachQueryHeadAgainstItsKvHead) {
  const Problem pr(1, 64, 4, 2, 8, false);
  AttentionParams<double> p = pr.params();
  p.q = pr.q.data(), p.k = pr.k.data();
  const Buffer k = repeat_heads(pr.k, pr.l, pr.kv_heads, pr.group(), pr.e);
  AttentionParams<double> repeated = p;
  repeated.kv_heads = 0;
  repeated.k = k.data();
  const auto grouped = measure_heads(p, 128), want = measure_heads(repeated, 128);
  ASSERT_EQ(grouped.size(), want.size());
  for (std::size_t h = 0; h < want.size(); ++h) {
    EXPECT_EQ(grouped[h].score_bound, want[h].score_bound) << h;
    EXPECT_EQ(grouped[h].raw_score_bound, want[h].raw_score_bound) << h;
  }
}

// The unmeasured exact plan runs every head as plan_heads' exact plan does.
TEST(AttentionViews, ExactPlanRunsLikeTheMeasuredOne) {
  const Problem pr(2, 33, 4, 2, 8, true);
  AttentionParams<double> p = pr.params();
  p.q = pr.q.data(), p.k = pr.k.data(), p.v = pr.v.data();
  AttentionRequest request;
  request.method = Method::exact;
  const auto unmeasured = exact_plan(p.heads), measured = plan_heads(p, request);
  ASSERT_EQ(unmeasured.size(), measured.size());
  Buffer o_unmeasured(pr.q.size()), o_measured(pr.q.size()), lse(2 * 4 * 33);
  for (auto [plan, o] : {std::pair{&unmeasured, &o_unmeasured}, std::pair{&measured, &o_measured}}) {
    p.o = o->data(), p.lse = lse.data();
    planned_attention_fwd(p, *plan);
  }
  for (std::size_t h = 0; h < measured.size(); ++h) {
    EXPECT_EQ(unmeasured[h].method, Method::exact) << h;
    EXPECT_EQ(unmeasured[h].raw_score_bound, 0.0) << "not measured";
    EXPECT_GT(measured[h].raw_score_bound, 0.0) << h;
  }
  EXPECT_EQ(o_unmeasured, o_measured);  // the same kernels on the same inputs
}

// The message of the Error(usage) that `fn` must raise.
std::string usage_message(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::usage) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return {};
}

TEST(AttentionViews, BadParamsNameTheField) {
  const Problem pr(2, 16, 4, 2, 8, false);
  Buffer out(pr.q.size()), kv_out(pr.k.size()), lse(2 * 4 * 16);
  AttentionParams<double> p = pr.params();
  p.q = pr.q.data(), p.k = pr.k.data(), p.v = pr.v.data(), p.d_o = pr.d_o.data();
  p.o = out.data(), p.lse = lse.data(), p.d_q = out.data(), p.d_k = kv_out.data(), p.d_v = kv_out.data();
  EXPECT_NO_THROW(checked(p, AttentionUse::backward));
  const auto message = [](const AttentionParams<double>& bad) {
    return usage_message([&] { checked(bad, AttentionUse::backward); });
  };

  auto bad = p;
  bad.kv_heads = 3;
  EXPECT_MENTIONS(message(bad), "does not divide");
  bad = p;
  bad.v = nullptr;
  EXPECT_MENTIONS(message(bad), "tensor v is null");
  bad = p;
  bad.scale = std::nan("");
  EXPECT_MENTIONS(message(bad), "scale");
  bad = p;
  bad.seq_len = 0;
  EXPECT_MENTIONS(message(bad), "positive");
  bad = p;
  bad.k_strides = {16 * 2 * 8, 4, 8};  // rows 4 apart, closer than E = 8
  EXPECT_MENTIONS(message(bad), "row stride");
  bad = p;
  bad.q_strides = {-128, 32, 8};
  EXPECT_MENTIONS(message(bad), "negative stride");
  bad = p;
  bad.d_q_strides = {16 * 32, 32, 4};  // heads 4 apart overlap their E = 8 values
  EXPECT_MENTIONS(message(bad), "output d_q");
  bad = p;
  bad.o_strides = {0, 32, 8};  // both sequences written to one place
  EXPECT_MENTIONS(message(bad), "output o");
  // Inputs may share memory: k read by every sequence.
  auto shared = p;
  shared.k_strides = {0, 16, 8};
  EXPECT_NO_THROW(checked(shared, AttentionUse::backward));
  // A grouped surrogate head's K/V gradient is a share: alone, it must add.
  EXPECT_MENTIONS(usage_message([&] { fast_attention_bwd(p, 0, SurrogateConfig{}); }), "add_kv_grads");
  EXPECT_MENTIONS(usage_message([&] { chained_attention_bwd(p, 0, SurrogateConfig{}); }), "add_kv_grads");
}

}  // namespace
}  // namespace lorafast
