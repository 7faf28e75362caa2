// Backward pass of the GPT-2 loss: one pass serves fine-tuning (gradients of the
// LoRA adapters only) and pretraining (gradients of every base weight too). The
// gradient flows through every layer: ln_f, then per block (last first) mlp.c_proj,
// GELU, mlp.c_fc, ln_2, attn.c_proj, attention (the forward's plan), attn.c_attn and ln_1, the
// residual gradient accumulating in place; with base-weight gradients it goes on
// into the embeddings, otherwise block 0 stops at its adapters.
#include <algorithm>

#include "lorafast/planned_attention.hpp"
#include "model/gelu.hpp"
#include "model/gpt_activations.hpp"
#include "model/layer_norm.hpp"
#include "model/lm_head_loss.hpp"
#include "model/token_embedding.hpp"

namespace lorafast {
namespace {

template <class T>
const T* ptr(const Tensor& t) {
  return t.data<T>();
}

// Sets the gradient outputs of `p` to the adapter's gradient slot, if adapted.
template <class T>
void bind_grads(LoraLinearParams<T>& p, std::optional<LoraAdapter>& grad) {
  if (p.rank == 0) return;
  p.d_lora_a = grad->a.data<T>();
  p.d_lora_b = grad->b.data<T>();
}

// Sets the base-weight gradient outputs of `p` to the module's slots in `g`.
template <class T>
void bind_base_grads(LoraLinearParams<T>& p, GptBlockWeights& g, LoraTarget target) {
  auto bind = [&](Tensor& w, Tensor& b) {
    p.d_w = w.data<T>();
    p.d_bias = b.data<T>();
  };
  switch (target) {
    case LoraTarget::attn_c_attn: bind(g.attn_c_attn_weight, g.attn_c_attn_bias); break;
    case LoraTarget::attn_c_proj: bind(g.attn_c_proj_weight, g.attn_c_proj_bias); break;
    case LoraTarget::mlp_c_fc: bind(g.mlp_c_fc_weight, g.mlp_c_fc_bias); break;
    case LoraTarget::mlp_c_proj: bind(g.mlp_c_proj_weight, g.mlp_c_proj_bias); break;
    default: LF_ASSERT(!"a GPT-2 block has only GPT-2 modules");
  }
}

// The gradient slot `member` of `g` (GptWeights<T> or GptBlockWeights), or nullptr
// when no base-weight gradient is wanted.
template <class T, class G>
T* slot(G* g, Tensor G::*member) {
  return g != nullptr ? (g->*member).template data<T>() : nullptr;
}

// The forward pass, then the backward pass into `out`; returns the loss.
template <class T>
double forward_backward(const GptWeights<T>& w, const GptLora<T>* lora, const TokenBatch& batch,
                        const AttentionRequest& attention, Recompute recompute,
                        const GradOutputs<GptWeights<T>>& out) {
  const GptConfig& cfg = w.config;
  const std::int64_t d = cfg.n_embd, layers = cfg.n_layer;
  GptWeights<T>* d_w = out.d_weights;
  GptActivations<T> act;
  gpt_forward(w, lora, batch, attention, keep_for_backward(recompute), act);
  const std::int64_t rows = act.rows;
  auto buffer = [](std::int64_t n) { return Activation<T>(static_cast<std::size_t>(n), T(0)); };
  Activation<T> d_res = buffer(rows * d), d_ln = buffer(rows * d), d_attn = buffer(rows * d);
  Activation<T> gelu_out = buffer(rows * 4 * d), d_wide = buffer(rows * 4 * d);

  const double loss = lm_head_loss(LmHeadLossParams<T>{rows, d, cfg.vocab_size, act.lnf_out.data(), ptr<T>(w.wte),
                                                       act.targets.data(), d_ln.data(), slot<T>(d_w, &GptWeights<T>::wte)});
  layer_norm_bwd(LayerNormParams<T>{rows, d, cfg.layer_norm_epsilon, act.residual.back().data(), ptr<T>(w.ln_f_weight),
                                    ptr<T>(w.ln_f_bias), nullptr, act.lnf_mean.data(), act.lnf_rstd.data(),
                                    d_ln.data(), d_res.data(), slot<T>(d_w, &GptWeights<T>::ln_f_weight),
                                    slot<T>(d_w, &GptWeights<T>::ln_f_bias)});

  AttentionParams<T> attn = gpt_attention_params<T>(cfg, batch.batch, batch.seq_len);
  for (std::int64_t i = layers - 1; i >= 0; --i) {
    const auto& b = w.blocks[static_cast<std::size_t>(i)];
    auto& a = act.block(i);
    if (act.keep != Keep::all)  // recompute it; d_attn is free scratch here
      gpt_block_fwd(w, lora, i, nullptr, act, act.input(i).data(), a, static_cast<T*>(nullptr), d_attn.data(),
                    static_cast<T*>(nullptr));
    GptBlockWeights* gb = d_w != nullptr ? &d_w->blocks[static_cast<std::size_t>(i)] : nullptr;
    auto bind = [&](LoraLinearParams<T>& p, LoraTarget t) {
      if (out.d_lora != nullptr) bind_grads(p, (*out.d_lora)[static_cast<std::size_t>(i)][static_cast<std::size_t>(t)]);
      if (gb != nullptr) bind_base_grads(p, *gb, t);
    };

    // MLP: d_res is d loss / d (block output) = d loss / d (mlp.c_proj output).
    gelu_fwd(GeluParams<T>{rows * 4 * d, a.fc_pre.data(), gelu_out.data(), nullptr, nullptr});
    auto mlp_proj = module_params(w, lora, i, LoraTarget::mlp_c_proj, rows);
    mlp_proj.x = gelu_out.data();
    mlp_proj.d_y = d_res.data();
    mlp_proj.d_x = d_wide.data();
    bind(mlp_proj, LoraTarget::mlp_c_proj);
    lora_linear_bwd(mlp_proj);
    gelu_bwd(GeluParams<T>{rows * 4 * d, a.fc_pre.data(), nullptr, d_wide.data(), d_wide.data()});
    auto c_fc = module_params(w, lora, i, LoraTarget::mlp_c_fc, rows);
    c_fc.x = a.ln2_out.data();
    c_fc.d_y = d_wide.data();
    c_fc.d_x = d_ln.data();
    bind(c_fc, LoraTarget::mlp_c_fc);
    lora_linear_bwd(c_fc);
    layer_norm_bwd(LayerNormParams<T>{rows, d, cfg.layer_norm_epsilon, a.x_mid.data(), ptr<T>(b.ln_2_weight),
                                      ptr<T>(b.ln_2_bias), nullptr, a.ln2_mean.data(), a.ln2_rstd.data(), d_ln.data(),
                                      d_res.data(), slot<T>(gb, &GptBlockWeights::ln_2_weight),
                                      slot<T>(gb, &GptBlockWeights::ln_2_bias)});  // d_res is now d loss / d x_mid

    // Attention.
    auto c_proj = module_params(w, lora, i, LoraTarget::attn_c_proj, rows);
    c_proj.x = a.attn.data();
    c_proj.d_y = d_res.data();
    c_proj.d_x = d_attn.data();
    bind(c_proj, LoraTarget::attn_c_proj);
    lora_linear_bwd(c_proj);
    attn.q = a.qkv.data();
    attn.k = a.qkv.data() + d;
    attn.v = a.qkv.data() + 2 * d;
    attn.o = a.attn.data();
    attn.lse = a.lse.data();
    attn.d_o = d_attn.data();
    attn.d_q = d_wide.data();  // the c_attn output gradient [M, 3D], written in place
    attn.d_k = d_wide.data() + d;
    attn.d_v = d_wide.data() + 2 * d;
    planned_attention_bwd(attn, act.plan[static_cast<std::size_t>(i)]);
    const bool to_input = i > 0 || d_w != nullptr;  // the embeddings are frozen unless d_w is wanted
    auto c_attn = module_params(w, lora, i, LoraTarget::attn_c_attn, rows);
    c_attn.x = a.ln1_out.data();
    c_attn.d_y = d_wide.data();
    c_attn.d_x = to_input ? d_ln.data() : nullptr;
    bind(c_attn, LoraTarget::attn_c_attn);
    lora_linear_bwd(c_attn);
    if (!to_input) break;
    layer_norm_bwd(LayerNormParams<T>{rows, d, cfg.layer_norm_epsilon, act.input(i).data(),
                                      ptr<T>(b.ln_1_weight), ptr<T>(b.ln_1_bias), nullptr, a.ln1_mean.data(),
                                      a.ln1_rstd.data(), d_ln.data(), d_res.data(),
                                      slot<T>(gb, &GptBlockWeights::ln_1_weight),
                                      slot<T>(gb, &GptBlockWeights::ln_1_bias)});  // d loss / d (block input)
  }
  if (d_w != nullptr) token_embedding_bwd(batch, d, d_res.data(), d_w->wte.template data<T>(), d_w->wpe.template data<T>());
  if (out.d_lora != nullptr && lora != nullptr) mask_c_attn_rows(*out.d_lora, lora->config);
  if (out.plan != nullptr) *out.plan = std::move(act.plan);
  return loss;
}

}  // namespace

template <class T>
GptLossGrad<T> gpt_loss_and_grad(const GptWeights<T>& w, const GptLora<T>& lora, const TokenBatch& batch,
                                 const AttentionRequest& attention, Recompute recompute) {
  validate_tokens(batch, w.config);
  validate_gpt_lora(lora, w.config, "adapter");
  GptLossGrad<T> out;
  out.d_lora = zero_grads(lora);
  out.loss =
      forward_backward(w, &lora, batch, attention, recompute, GradOutputs<GptWeights<T>>{&out.d_lora, nullptr, &out.plan});
  return out;
}

template <class T>
GptFullGrad<T> gpt_loss_and_full_grad(const GptWeights<T>& w, const GptLora<T>* lora, const TokenBatch& batch,
                                       Recompute recompute) {
  validate_tokens(batch, w.config);
  GptFullGrad<T> out;
  out.d_weights = zero_gpt_weights<T>(w.config);
  if (lora != nullptr) {
    validate_gpt_lora(*lora, w.config, "adapter");
    out.d_lora = zero_grads(*lora);
  }
  out.loss = forward_backward(w, lora, batch, AttentionRequest{}, recompute,
                              GradOutputs<GptWeights<T>>{lora != nullptr ? &out.d_lora : nullptr, &out.d_weights});
  return out;
}

#define LORAFAST_INSTANTIATE(T)                                                                                  \
  template GptFullGrad<T> gpt_loss_and_full_grad<T>(const GptWeights<T>&, const GptLora<T>*, const TokenBatch&,     \
                                                    Recompute);                                                   \
  template GptLossGrad<T> gpt_loss_and_grad<T>(const GptWeights<T>&, const GptLora<T>&, const TokenBatch&,          \
                                               const AttentionRequest&, Recompute);
LORAFAST_INSTANTIATE(float)
LORAFAST_INSTANTIATE(double)
#undef LORAFAST_INSTANTIATE

}  // namespace lorafast
