// Finite-difference checks in double of every backward: the reference and the
// optimized exact path, along a random direction per adapter tensor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "lorafast/threads.hpp"
#include "ref/reference.hpp"
#include "support/sweep.hpp"

namespace lorafast {
namespace {

using GradFn = std::function<LoraAttentionGrads(const LoraAttentionInputs&, const LoraAttentionOptions&)>;

Tensor random_direction(const Shape& shape, std::mt19937_64& rng) {
  std::normal_distribution<double> normal;
  Tensor t(DType::f64, shape);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = normal(rng);
  return t;
}

void add_scaled(Tensor& t, const Tensor& direction, double h) {
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] += h * direction.at(i);
}

double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) s += a.at(i) * b.at(i);
  return s;
}

// Central difference (loss(t + hv) - loss(t - hv)) / 2h against <grad, v>. Its
// truncation error is O(h^2) and its rounding error ~ u |loss| / h; h = 1e-5 balances
// the two near 1e-10 relative to the loss, so 1e-6 relative to the directional
// derivative's scale leaves a wide margin while still catching any wrong term.
void check_directional(const CaseSpec& spec, const GradFn& grad_fn) {
  auto inputs = make_case(spec);
  auto options = spec.options(DType::f64);
  options.scaling.alpha = 3.0;  // a scaling factor != 1 must be applied exactly once
  const auto grads = grad_fn(inputs, options);
  // A gradient that is zero in exact arithmetic (q and k when L = 1) comes out as
  // rounding noise, so errors are measured against the whole gradient's norm too.
  double total_norm_sq = 0;
  for (const auto& g : grads.d_lora)
    if (g) total_norm_sq += dot(g->a, g->a) + dot(g->b, g->b);
  std::mt19937_64 rng(spec.seed + 99);
  const double h = 1e-5;
  for (int p = 0; p < 3; ++p) {
    if (!inputs.lora[p]) continue;
    for (int which = 0; which < 2; ++which) {
      Tensor& param = which == 0 ? inputs.lora[p]->a : inputs.lora[p]->b;
      const Tensor& grad = which == 0 ? grads.d_lora[p]->a : grads.d_lora[p]->b;
      const Tensor v = random_direction(param.shape(), rng);
      add_scaled(param, v, h);
      const double plus = grad_fn(inputs, options).loss;
      add_scaled(param, v, -2 * h);
      const double minus = grad_fn(inputs, options).loss;
      add_scaled(param, v, h);
      const double numeric = (plus - minus) / (2 * h), analytic = dot(grad, v);
      const double scale = std::sqrt(std::max(dot(grad, grad), total_norm_sq) * dot(v, v));
      EXPECT_NEAR(numeric, analytic, 1e-6 * scale)
          << spec.name() << " " << (which == 0 ? "lora_a_" : "lora_b_") << "qkv"[p];
    }
  }
}

const char* fd_cases[] = {"grad/causal/N2/L7/E5/H3/R2/qkv", "grad/bidir/N1/L97/E5/H1/R8/qkv",
                          "grad/causal/N1/L130/E4/H2/R1/qkv", "grad/bidir/N2/L1/E3/H1/R2/qkv"};

TEST(FiniteDifferences, Reference) {
  for (const char* name : fd_cases) check_directional(CaseSpec::parse(name), ref::lora_attention_grad);
}

TEST(FiniteDifferences, OptimizedExact) {
  set_num_threads(2);
  for (const char* name : fd_cases) check_directional(CaseSpec::parse(name), lora_attention_grad);
  set_num_threads(0);
}

}  // namespace
}  // namespace lorafast
