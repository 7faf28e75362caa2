// bf16 mixed precision in the decoder (store_frozen_bf16, decoder.hpp): the LoRA
// linear layer and the LM head with weights held in bf16, element-wise against a
// double reference on the same bf16-rounded operands with the written f32 bound;
// whole models (GPT-2 and Llama, LoRA on every projection) with bf16 arithmetic on and
// off (the fallback) against their f32 selves, within the rounding of the products'
// inputs; and decoding with the KV cache against the full forward pass.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "lorafast/decoder.hpp"
#include "lorafast/threads.hpp"
#include "model/lm_head_loss.hpp"
#include "model/lora_linear.hpp"
#include "support/tiny_gpt.hpp"
#include "support/tiny_llama.hpp"

namespace lorafast {
namespace {

constexpr double u32 = 0x1p-24;  // f32 unit roundoff

double round16(double v) { return to_f32(to_bf16(static_cast<float>(v))); }

std::vector<float> random_floats(std::size_t n, double scale, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(normal(rng));
  return v;
}

std::vector<BFloat16> bf16_of(const std::vector<float>& v) {
  std::vector<BFloat16> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = to_bf16(v[i]);
  return out;
}

// Runs f with bf16 arithmetic on, then off (the fallback), restoring it.
template <class F>
void on_both_paths(F f) {
  for (bool on : {true, false}) {
    if (on && !cpu_has_bf16_arithmetic()) continue;
    set_bf16_arithmetic(on);
    SCOPED_TRACE(on ? "bf16 arithmetic" : "fallback");
    f();
  }
  set_bf16_arithmetic(true);
}

// y = bias + x16 W16 + s (x A^T) B^T and d_x = d_y16 W16^T + s (d_y B) A, d_B, d_A in
// f32 from f32 x and d_y; every term's magnitude is summed alongside, for the bound:
// the products of bf16 values are exact in f32, so only the f32 sums round, at most
// (k + 4) u times the sum of |terms| (k terms, the adapter's two short sums, the bias).
TEST(FrozenBf16, LoraLinearMatchesTheRoundedOperandsInDouble) {
  for (std::int64_t rows : {1, 37}) {  // 1: the decoding step's column split
    const std::int64_t in = 70, out = 150, rank = 3;  // out: past the GEMV's 128-column block, with a tail
    const float s = 1.5f;
    std::mt19937_64 rng(static_cast<std::uint64_t>(rows));
    const auto x = random_floats(rows * in, 1.0, rng), w = random_floats(in * out, 0.1, rng);
    const auto a = random_floats(rank * in, 0.1, rng), b = random_floats(out * rank, 0.3, rng);
    const auto bias = random_floats(out, 0.1, rng), d_y = random_floats(rows * out, 1.0, rng);
    const auto w16 = bf16_of(w);
    std::vector<double> y_ref(rows * out), y_mag(rows * out), dx_ref(rows * in), dx_mag(rows * in);
    for (std::int64_t r = 0; r < rows; ++r) {
      std::vector<double> z(rank, 0.0), g(rank, 0.0);
      for (std::int64_t k = 0; k < rank; ++k)
        for (std::int64_t i = 0; i < in; ++i) z[k] += double(x[r * in + i]) * a[k * in + i];
      for (std::int64_t k = 0; k < rank; ++k)
        for (std::int64_t c = 0; c < out; ++c) g[k] += double(d_y[r * out + c]) * b[c * rank + k];
      for (std::int64_t c = 0; c < out; ++c) {
        double v = bias[c], m = std::abs(bias[c]);
        for (std::int64_t i = 0; i < in; ++i) {
          const double t = round16(x[r * in + i]) * to_f32(w16[i * out + c]);
          v += t, m += std::abs(t);
        }
        for (std::int64_t k = 0; k < rank; ++k) v += s * z[k] * b[c * rank + k], m += std::abs(s * z[k] * b[c * rank + k]);
        y_ref[r * out + c] = v, y_mag[r * out + c] = m;
      }
      for (std::int64_t i = 0; i < in; ++i) {
        double v = 0, m = 0;
        for (std::int64_t c = 0; c < out; ++c) {
          const double t = round16(d_y[r * out + c]) * to_f32(w16[i * out + c]);
          v += t, m += std::abs(t);
        }
        for (std::int64_t k = 0; k < rank; ++k) v += s * g[k] * a[k * in + i], m += std::abs(s * g[k] * a[k * in + i]);
        dx_ref[r * in + i] = v, dx_mag[r * in + i] = m;
      }
    }
    on_both_paths([&] {
      std::vector<float> y(rows * out), dx(rows * in), da(rank * in), db(out * rank);
      LoraLinearParams<float> p;
      p.rows = rows, p.in = in, p.out = out, p.rank = rank, p.scale = s;
      p.w_bf16 = w16.data(), p.bias = bias.data(), p.lora_a = a.data(), p.lora_b = b.data();
      p.x = x.data(), p.y = y.data(), p.d_y = d_y.data(), p.d_x = dx.data(), p.d_lora_a = da.data(), p.d_lora_b = db.data();
      lora_linear_fwd(p);
      lora_linear_bwd(p);
      for (std::size_t i = 0; i < y.size(); ++i)
        ASSERT_LE(std::abs(y[i] - y_ref[i]), (in + 4) * u32 * y_mag[i]) << "rows " << rows << " y " << i;
      for (std::size_t i = 0; i < dx.size(); ++i)
        ASSERT_LE(std::abs(dx[i] - dx_ref[i]), (out + 4) * u32 * dx_mag[i]) << "rows " << rows << " d_x " << i;
      // The adapter's gradients see f32 x and d_y, as with f32 weights.
      LoraLinearParams<float> f32 = p;
      std::vector<float> w32(w16.size()), da32(da.size()), db32(db.size()), dx32(dx.size());
      for (std::size_t i = 0; i < w16.size(); ++i) w32[i] = to_f32(w16[i]);
      f32.w_bf16 = nullptr, f32.w = w32.data(), f32.d_x = dx32.data(), f32.d_lora_a = da32.data(), f32.d_lora_b = db32.data();
      lora_linear_bwd(f32);
      EXPECT_EQ(da, da32);
      EXPECT_EQ(db, db32);
    });
  }
}

// The LM head with wte in bf16: logits from h16 and wte16 (exact products, f32 sums);
// d_h from the f32 d_logits rounded to bf16, so against the exact d_h the bound adds
// 2^-8 (bf16's unit roundoff: one rounding, relative) of sum_j |d_logit_j wte_jc|.
TEST(FrozenBf16, LmHeadMatchesTheRoundedOperandsInDouble) {
  const std::int64_t rows = 41, dim = 19, vocab = 37;
  std::mt19937_64 rng(7);
  const auto h = random_floats(rows * dim, 1.0, rng), wte = random_floats(vocab * dim, 0.5, rng);
  const auto wte16 = bf16_of(wte);
  std::vector<std::int32_t> targets(rows);
  for (auto& t : targets) t = static_cast<std::int32_t>(rng() % vocab);
  double loss_ref = 0;
  std::vector<double> dh_ref(rows * dim, 0.0), dh_mag(rows * dim, 0.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    std::vector<double> logits(vocab);
    double max = -INFINITY;
    for (std::int64_t j = 0; j < vocab; ++j) {
      for (std::int64_t c = 0; c < dim; ++c) logits[j] += round16(h[r * dim + c]) * to_f32(wte16[j * dim + c]);
      max = std::max(max, logits[j]);
    }
    double sum = 0;
    for (double l : logits) sum += std::exp(l - max);
    const double lse = max + std::log(sum);
    loss_ref += (lse - logits[targets[r]]) / rows;
    for (std::int64_t j = 0; j < vocab; ++j) {
      const double g = (std::exp(logits[j] - lse) - (j == targets[r])) / rows;
      for (std::int64_t c = 0; c < dim; ++c) {
        dh_ref[r * dim + c] += g * to_f32(wte16[j * dim + c]);
        dh_mag[r * dim + c] += std::abs(g * to_f32(wte16[j * dim + c]));
      }
    }
  }
  on_both_paths([&] {
    std::vector<float> dh(rows * dim);
    LmHeadLossParams<float> p;
    p.rows = rows, p.dim = dim, p.vocab = vocab, p.h = h.data(), p.wte_bf16 = wte16.data();
    p.targets = targets.data(), p.d_h = dh.data();
    const double loss = lm_head_loss(p);
    // Logits carry an f32 sum error (dim u relative to their terms, O(1) here) and
    // exp_approx's few ulps; 1e-5 absolute on a loss of ~4 nats covers both.
    EXPECT_NEAR(loss, loss_ref, 1e-5);
    for (std::size_t i = 0; i < dh.size(); ++i)
      ASSERT_LE(std::abs(dh[i] - dh_ref[i]), (0x1p-8 + (vocab + 8) * u32) * dh_mag[i]) << i;
  });
}

struct Run {
  double loss = 0;
  std::vector<LoraLayer> grads;
};

template <class W>
Run lora_run(const W& weights, const std::vector<LoraTarget>& targets) {
  LoraConfig c;
  c.rank = 4;
  c.alpha = 8;
  c.targets = targets;
  const auto lora = testing::random_lora<float>(weights.config, c, 3);
  const auto batch = testing::random_tokens(2, 20, weights.config.vocab_size, 5);
  const auto g = model_loss_and_grad(weights, lora, batch, AttentionRequest{}, Recompute::automatic);
  return {g.loss, g.d_lora};
}

// Against the f32 model: every product input carries a bf16 rounding (2^-8
// relative at most), a few dozen of them chained through two layers: 2^-4 is loose for
// that, and a wrong binding (a transposed or swapped matrix) gives O(1). (Without bf16
// arithmetic the attention runs its f32 kernels, so the two paths differ by bf16
// roundings too; the layers' own fallback is checked tightly above.)
template <class W>
void check_model(W f32, const std::vector<LoraTarget>& targets) {
  const Run reference = lora_run(f32, targets);
  W bf16 = f32;
  store_frozen_bf16(bf16);
  on_both_paths([&] {
    const Run got = lora_run(bf16, targets);
    EXPECT_NEAR(got.loss, reference.loss, 0x1p-7 * std::abs(reference.loss));
    const double diff = testing::lora_relative_difference(got.grads, reference.grads);
    EXPECT_LE(diff, 0x1p-4);
    EXPECT_GT(diff, 1e-5);  // the products really ran on bf16 values (f32 alone: ~1e-7)
  });
}

TEST(FrozenBf16, GptAndLlamaAgreeOnBothPathsAndTrackF32) {
  set_num_threads(2);
  GptWeights<float> gpt = gpt_weights_from_tensors<float>(
      testing::tiny_config({.layers = 2, .heads = 2, .dim = 16, .vocab = 29, .positions = 24}),
      testing::tiny_model_tensors({.layers = 2, .heads = 2, .dim = 16, .vocab = 29, .positions = 24}, false), "tiny");
  check_model(gpt, {LoraTarget::attn_c_attn, LoraTarget::attn_c_proj, LoraTarget::mlp_c_fc, LoraTarget::mlp_c_proj});
  testing::TinyLlamaSpec spec;
  spec.dim = 16, spec.ffn = 24, spec.vocab = 29;
  for (bool tied : {false, true}) {
    spec.tied = tied;
    const auto llama = testing::tiny_llama<float>(spec);
    check_model(llama, model_lora_targets(llama.config));
  }
  set_num_threads(0);
}

// Decoding steps (single-row products: gemv_bf16, f32 attention on the cache)
// against model_next_logits of the same bf16 weights (bf16 GEMMs and attention
// tiles, a double LM head on an unrounded h): the two round different values to bf16
// (2^-8 each, a dozen or so on a path through two blocks), so 2^-5 of the logit
// scale; a wrong binding or orientation gives O(1).
TEST(FrozenBf16, DecodingStepsMatchTheFullForwardPass) {
  testing::TinyLlamaSpec spec;
  spec.dim = 16, spec.ffn = 40, spec.vocab = 150;  // the head's GEMV crosses its 128-column block
  auto w = testing::tiny_llama<float>(spec);
  store_frozen_bf16(w);
  std::vector<std::int32_t> context{3, 141, 7};
  CachedDecoder<LlamaWeights<float>> decoder(w, nullptr, w.config.n_positions);
  const std::vector<double>* cached = &decoder.prefill(context);
  for (std::int32_t t = 0; decoder.length() < w.config.n_positions; ++t) {
    const auto full = model_next_logits(w, static_cast<const GptLora<float>*>(nullptr), context);
    double scale = 0, worst = 0;
    for (double v : full) scale = std::max(scale, std::abs(v));
    for (std::size_t j = 0; j < full.size(); ++j) worst = std::max(worst, std::abs((*cached)[j] - full[j]));
    ASSERT_LE(worst, 0x1p-5 * (1 + scale)) << "at length " << context.size();
    context.push_back((t * 37) % 150);
    cached = &decoder.step(context.back());
  }
}

}  // namespace
}  // namespace lorafast
