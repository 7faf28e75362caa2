// Backward pass of the GPT-2 loss to the LoRA adapters. The base weights are
// frozen, but the gradient flows through every layer: ln_f, then per block (last
// first) mlp.c_proj, GELU, mlp.c_fc, ln_2, attn.c_proj, exact attention, attn.c_attn
// and ln_1, the residual gradient accumulating in place. The embeddings are frozen,
// so block 0 stops at its adapters.
#include <algorithm>

#include "lorafast/attention.hpp"
#include "model/gelu.hpp"
#include "model/gpt_activations.hpp"
#include "model/layer_norm.hpp"
#include "model/lm_head_loss.hpp"

namespace lorafast {
namespace {

template <class T>
const T* ptr(const Tensor& t) {
  return t.data<T>();
}

// d_q, d_k, d_v [M, D] -> the c_attn output gradient [M, 3D] (columns q | k | v).
template <class T>
void merge_qkv(const std::vector<T>& d_q, const std::vector<T>& d_k, const std::vector<T>& d_v, std::int64_t rows,
               std::int64_t d, std::vector<T>& d_qkv) {
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    T* dst = d_qkv.data() + r * 3 * d;
    std::copy(d_q.data() + r * d, d_q.data() + (r + 1) * d, dst);
    std::copy(d_k.data() + r * d, d_k.data() + (r + 1) * d, dst + d);
    std::copy(d_v.data() + r * d, d_v.data() + (r + 1) * d, dst + 2 * d);
  }
}

// Sets the gradient outputs of `p` to the adapter's gradient slot, if adapted.
template <class T>
void bind_grads(LoraLinearParams<T>& p, std::optional<LoraAdapter>& grad) {
  if (p.rank == 0) return;
  p.d_lora_a = grad->a.data<T>();
  p.d_lora_b = grad->b.data<T>();
}

template <class T>
std::vector<LoraLayer> zero_grads(const GptLora<T>& lora) {
  std::vector<LoraLayer> grads(lora.layers.size());
  for (std::size_t i = 0; i < grads.size(); ++i)
    for (std::size_t t = 0; t < lora_target_count; ++t)
      if (const auto& a = lora.layers[i][t])
        grads[i][t] = LoraAdapter{Tensor(dtype_of<T>(), a->a.shape()), Tensor(dtype_of<T>(), a->b.shape())};
  return grads;
}

}  // namespace

template <class T>
GptLossGrad<T> gpt_loss_and_grad(const GptWeights<T>& w, const GptLora<T>& lora, const TokenBatch& batch) {
  validate_tokens(batch, w.config);
  validate_gpt_lora(lora, w.config, "adapter");
  const GptConfig& cfg = w.config;
  const std::int64_t d = cfg.n_embd, layers = cfg.n_layer;
  GptActivations<T> act;
  gpt_forward(w, &lora, batch, /*keep_all=*/true, act);
  const std::int64_t rows = act.rows;
  auto buffer = [](std::int64_t n) { return std::vector<T>(static_cast<std::size_t>(n)); };
  std::vector<T> d_res = buffer(rows * d), d_ln = buffer(rows * d), d_attn = buffer(rows * d);
  std::vector<T> d_q = buffer(rows * d), d_k = buffer(rows * d), d_v = buffer(rows * d);
  std::vector<T> gelu_out = buffer(rows * 4 * d), d_wide = buffer(rows * 4 * d);

  GptLossGrad<T> out;
  out.d_lora = zero_grads(lora);
  out.loss = lm_head_loss(LmHeadLossParams<T>{rows, d, cfg.vocab_size, act.lnf_out.data(), ptr<T>(w.wte),
                                              act.targets.data(), d_ln.data()});
  layer_norm_bwd(LayerNormParams<T>{rows, d, cfg.layer_norm_epsilon, act.residual.back().data(), ptr<T>(w.ln_f_weight),
                                    ptr<T>(w.ln_f_bias), nullptr, act.lnf_mean.data(), act.lnf_rstd.data(),
                                    d_ln.data(), d_res.data()});

  AttentionParams<T> attn;
  attn.batch = batch.batch;
  attn.seq_len = batch.seq_len;
  attn.heads = cfg.n_head;
  attn.head_dim = cfg.head_dim();
  attn.scale = AttentionConfig{}.resolved_scale(attn.head_dim);
  attn.causal = true;
  for (std::int64_t i = layers - 1; i >= 0; --i) {
    const auto& b = w.blocks[static_cast<std::size_t>(i)];
    auto& a = act.blocks[static_cast<std::size_t>(i)];
    auto& grads = out.d_lora[static_cast<std::size_t>(i)];
    auto grad_of = [&](LoraTarget t) -> std::optional<LoraAdapter>& { return grads[static_cast<std::size_t>(t)]; };

    // MLP: d_res is d loss / d (block output) = d loss / d (mlp.c_proj output).
    gelu_fwd(GeluParams<T>{rows * 4 * d, a.fc_pre.data(), gelu_out.data(), nullptr, nullptr});
    auto mlp_proj = module_params(w, &lora, i, LoraTarget::mlp_c_proj, rows);
    mlp_proj.x = gelu_out.data();
    mlp_proj.d_y = d_res.data();
    mlp_proj.d_x = d_wide.data();
    bind_grads(mlp_proj, grad_of(LoraTarget::mlp_c_proj));
    lora_linear_bwd(mlp_proj);
    gelu_bwd(GeluParams<T>{rows * 4 * d, a.fc_pre.data(), nullptr, d_wide.data(), d_wide.data()});
    auto c_fc = module_params(w, &lora, i, LoraTarget::mlp_c_fc, rows);
    c_fc.x = a.ln2_out.data();
    c_fc.d_y = d_wide.data();
    c_fc.d_x = d_ln.data();
    bind_grads(c_fc, grad_of(LoraTarget::mlp_c_fc));
    lora_linear_bwd(c_fc);
    layer_norm_bwd(LayerNormParams<T>{rows, d, cfg.layer_norm_epsilon, a.x_mid.data(), ptr<T>(b.ln_2_weight),
                                      ptr<T>(b.ln_2_bias), nullptr, a.ln2_mean.data(), a.ln2_rstd.data(), d_ln.data(),
                                      d_res.data()});  // d_res is now d loss / d x_mid

    // Attention.
    auto c_proj = module_params(w, &lora, i, LoraTarget::attn_c_proj, rows);
    c_proj.x = a.attn.data();
    c_proj.d_y = d_res.data();
    c_proj.d_x = d_attn.data();
    bind_grads(c_proj, grad_of(LoraTarget::attn_c_proj));
    lora_linear_bwd(c_proj);
    attn.q = a.q.data();
    attn.k = a.k.data();
    attn.v = a.v.data();
    attn.o = a.attn.data();
    attn.lse = a.lse.data();
    attn.d_o = d_attn.data();
    attn.d_q = d_q.data();
    attn.d_k = d_k.data();
    attn.d_v = d_v.data();
    attention_bwd(attn);
    merge_qkv(d_q, d_k, d_v, rows, d, d_wide);
    auto c_attn = module_params(w, &lora, i, LoraTarget::attn_c_attn, rows);
    c_attn.x = a.ln1_out.data();
    c_attn.d_y = d_wide.data();
    c_attn.d_x = i > 0 ? d_ln.data() : nullptr;  // the embeddings are frozen
    bind_grads(c_attn, grad_of(LoraTarget::attn_c_attn));
    lora_linear_bwd(c_attn);
    if (i == 0) break;
    layer_norm_bwd(LayerNormParams<T>{rows, d, cfg.layer_norm_epsilon, act.residual[static_cast<std::size_t>(i)].data(),
                                      ptr<T>(b.ln_1_weight), ptr<T>(b.ln_1_bias), nullptr, a.ln1_mean.data(),
                                      a.ln1_rstd.data(), d_ln.data(), d_res.data()});  // d loss / d (block input)
  }
  mask_c_attn_rows(out.d_lora, lora.config);
  return out;
}

template GptLossGrad<float> gpt_loss_and_grad<float>(const GptWeights<float>&, const GptLora<float>&, const TokenBatch&);
template GptLossGrad<double> gpt_loss_and_grad<double>(const GptWeights<double>&, const GptLora<double>&,
                                                       const TokenBatch&);

}  // namespace lorafast
