#include <gtest/gtest.h>

#include "lorafast/case_spec.hpp"

namespace lorafast {
namespace {

TEST(CaseSpec, NameRoundTrips) {
  CaseSpec spec;
  spec.batch = 2;
  spec.seq_len = 97;
  spec.head_dim = 5;
  spec.heads = 3;
  spec.rank = 8;
  spec.causal = true;
  spec.adapted = "qkv";
  EXPECT_EQ(spec.name(), "grad/causal/N2/L97/E5/H3/R8/qkv");
  const auto parsed = CaseSpec::parse(spec.name());
  EXPECT_EQ(parsed.name(), spec.name());
}

TEST(CaseSpec, ShortFormUsesDefaults) {
  const auto spec = CaseSpec::parse("grad/bidir/L7/E1/H1/qv");
  EXPECT_EQ(spec.batch, 1);
  EXPECT_EQ(spec.rank, 4);
  EXPECT_FALSE(spec.causal);
}

TEST(CaseSpec, MalformedNamesAreUsageErrors) {
  for (const char* bad : {"grad/causal/L7/E1/qv", "grad/sideways/L7/E1/H1/qv", "grad/causal/L0/E1/H1/qv",
                          "grad/causal/L7/E1/H1/qz", "grad/causal/Lx/E1/H1/qv", "conv/causal/L7/E1/H1/qv"}) {
    try {
      CaseSpec::parse(bad);
      ADD_FAILURE() << bad << " parsed";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::usage) << bad;
    }
  }
}

TEST(CaseSpec, MakeCaseHasDocumentedShapes) {
  const auto spec = CaseSpec::parse("grad/causal/N2/L7/E5/H3/R2/qk");
  const auto in = make_case(spec);
  EXPECT_EQ(in.x.shape(), (Shape{2, 7, 15}));
  EXPECT_EQ(in.w[0].shape(), (Shape{15, 15}));
  ASSERT_TRUE(in.lora[0] && in.lora[1]);
  EXPECT_FALSE(in.lora[2]);
  EXPECT_EQ(in.lora[1]->a.shape(), (Shape{2, 15}));
  EXPECT_EQ(in.lora[1]->b.shape(), (Shape{15, 2}));
}

}  // namespace
}  // namespace lorafast
