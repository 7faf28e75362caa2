#include <cmath>
#include <numbers>
#include <vector>

#include "ref/gpt_reference.hpp"

namespace lorafast::ref {
namespace {

using Matrix = std::vector<std::vector<double>>;  // rows of a [T, width] activation

Matrix zeros(std::int64_t rows, std::int64_t cols) {
  return Matrix(static_cast<std::size_t>(rows), std::vector<double>(static_cast<std::size_t>(cols), 0.0));
}

// y = x W_eff + b with W_eff = W + s (B A)^T: [in, out].
Matrix conv1d(const Matrix& x, const Tensor& w, const Tensor& b, const std::optional<LoraAdapter>& lora, double s) {
  const std::int64_t in = w.dim(0), out = w.dim(1);
  std::vector<double> w_eff(static_cast<std::size_t>(in * out));
  for (std::int64_t i = 0; i < in; ++i)
    for (std::int64_t o = 0; o < out; ++o) {
      double delta = 0;
      if (lora)
        for (std::int64_t r = 0; r < lora->rank(); ++r) delta += lora->b.at(o * lora->rank() + r) * lora->a.at(r * in + i);
      w_eff[static_cast<std::size_t>(i * out + o)] = w.at(i * out + o) + s * delta;
    }
  Matrix y = zeros(static_cast<std::int64_t>(x.size()), out);
  for (std::size_t t = 0; t < x.size(); ++t)
    for (std::int64_t o = 0; o < out; ++o) {
      double sum = b.at(o);
      for (std::int64_t i = 0; i < in; ++i) sum += x[t][static_cast<std::size_t>(i)] * w_eff[static_cast<std::size_t>(i * out + o)];
      y[t][static_cast<std::size_t>(o)] = sum;
    }
  return y;
}

Matrix layer_norm(const Matrix& x, const Tensor& weight, const Tensor& bias, double eps) {
  Matrix y = x;
  for (auto& row : y) {
    const double n = static_cast<double>(row.size());
    double mean = 0, var = 0;
    for (double v : row) mean += v / n;
    for (double v : row) var += (v - mean) * (v - mean) / n;
    for (std::size_t c = 0; c < row.size(); ++c)
      row[c] = (row[c] - mean) / std::sqrt(var + eps) * weight.at(static_cast<std::int64_t>(c)) + bias.at(static_cast<std::int64_t>(c));
  }
  return y;
}

// Causal multi-head attention of one sequence; q | k | v are the columns of qkv.
Matrix attention(const Matrix& qkv, std::int64_t heads, std::int64_t d) {
  const std::int64_t len = static_cast<std::int64_t>(qkv.size()), e = d / heads;
  Matrix o = zeros(len, d);
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t i = 0; i < len; ++i) {
      std::vector<double> p(static_cast<std::size_t>(i + 1));
      double max = -INFINITY, sum = 0;
      for (std::int64_t j = 0; j <= i; ++j) {
        double s = 0;
        for (std::int64_t c = 0; c < e; ++c) s += qkv[i][h * e + c] * qkv[j][d + h * e + c];
        p[j] = s / std::sqrt(static_cast<double>(e));
        max = std::max(max, p[j]);
      }
      for (auto& v : p) sum += (v = std::exp(v - max));
      for (std::int64_t j = 0; j <= i; ++j)
        for (std::int64_t c = 0; c < e; ++c) o[i][h * e + c] += p[j] / sum * qkv[j][2 * d + h * e + c];
    }
  return o;
}

double gelu(double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (x + 0.044715 * x * x * x))); }

void add_to(Matrix& x, const Matrix& y) {
  for (std::size_t t = 0; t < x.size(); ++t)
    for (std::size_t c = 0; c < x[t].size(); ++c) x[t][c] += y[t][c];
}

}  // namespace

double gpt_loss(const GptWeights<double>& w, const GptLora<double>* lora, const TokenBatch& batch) {
  validate_tokens(batch, w.config);
  const GptConfig& cfg = w.config;
  const std::int64_t d = cfg.n_embd, len = batch.seq_len;
  const double s = lora ? lora->config.scaling() : 0.0;
  const std::optional<LoraAdapter> none;
  auto adapter = [&](std::int64_t i, LoraTarget t) -> const std::optional<LoraAdapter>& {
    return lora ? lora->at(i, t) : none;
  };
  double total = 0;
  for (std::int64_t n = 0; n < batch.batch; ++n) {
    Matrix x = zeros(len, d);
    for (std::int64_t t = 0; t < len; ++t)
      for (std::int64_t c = 0; c < d; ++c) x[t][c] = w.wte.at(batch.at(n, t) * d + c) + w.wpe.at(t * d + c);
    for (std::int64_t i = 0; i < cfg.n_layer; ++i) {
      const auto& b = w.blocks[static_cast<std::size_t>(i)];
      const Matrix qkv = conv1d(layer_norm(x, b.ln_1_weight, b.ln_1_bias, cfg.layer_norm_epsilon), b.attn_c_attn_weight,
                                b.attn_c_attn_bias, adapter(i, LoraTarget::attn_c_attn), s);
      add_to(x, conv1d(attention(qkv, cfg.n_head, d), b.attn_c_proj_weight, b.attn_c_proj_bias,
                       adapter(i, LoraTarget::attn_c_proj), s));
      Matrix h = conv1d(layer_norm(x, b.ln_2_weight, b.ln_2_bias, cfg.layer_norm_epsilon), b.mlp_c_fc_weight,
                        b.mlp_c_fc_bias, adapter(i, LoraTarget::mlp_c_fc), s);
      for (auto& row : h)
        for (auto& v : row) v = gelu(v);
      add_to(x, conv1d(h, b.mlp_c_proj_weight, b.mlp_c_proj_bias, adapter(i, LoraTarget::mlp_c_proj), s));
    }
    const Matrix f = layer_norm(x, w.ln_f_weight, w.ln_f_bias, cfg.layer_norm_epsilon);
    for (std::int64_t t = 0; t < len; ++t) {
      std::vector<double> logits(static_cast<std::size_t>(cfg.vocab_size));
      double max = -INFINITY, sum = 0;
      for (std::int64_t v = 0; v < cfg.vocab_size; ++v) {
        for (std::int64_t c = 0; c < d; ++c) logits[v] += f[t][c] * w.wte.at(v * d + c);
        max = std::max(max, logits[v]);
      }
      for (double l : logits) sum += std::exp(l - max);
      total += max + std::log(sum) - logits[static_cast<std::size_t>(batch.at(n, t + 1))];
    }
  }
  return total / static_cast<double>(batch.predicted());
}

}  // namespace lorafast::ref
