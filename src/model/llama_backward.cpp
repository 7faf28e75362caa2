// Backward pass of the Llama-family loss: one pass serves fine-tuning (gradients of
// the LoRA adapters only) and pretraining (gradients of every base weight too). The
// final norm, then per block (last first) down_proj, SwiGLU, gate_proj + up_proj,
// the post-attention norm, o_proj, attention (the forward's plan), the inverse
// rotation of d_q and d_k, q/k/v_proj and the input norm, the residual gradient
// accumulating in place; with base-weight gradients it goes on into the token
// embedding, otherwise block 0 stops at its adapters.
#include "lorafast/llama.hpp"
#include "model/llama_activations.hpp"
#include "lorafast/planned_attention.hpp"
#include "model/llama_attention.hpp"
#include "model/lm_head_loss.hpp"
#include "model/rms_norm.hpp"
#include "model/swiglu.hpp"
#include "model/token_embedding.hpp"

namespace lorafast {
namespace {

template <class T>
void add_to(T* acc, const Activation<T>& x) {
  const auto n = static_cast<std::int64_t>(x.size());
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) acc[i] += x[static_cast<std::size_t>(i)];
}

// The gradient slot of `t` (a tensor of a gradient LlamaWeights), nullptr when no
// base-weight gradient is wanted or the tensor is absent (a bias the model lacks).
template <class T>
T* slot(Tensor* t) {
  return t != nullptr && !t->empty() ? t->data<T>() : nullptr;
}

// The weight and bias gradient slots of projection `target` in `g`.
template <class T>
void bind_base_grads(LoraLinearParams<T>& p, LlamaBlockWeights& g, LoraTarget target) {
  auto bind = [&](Tensor& w, Tensor* b) {
    p.d_w = w.data<T>();
    p.d_bias = slot<T>(b);
  };
  switch (target) {
    case LoraTarget::q_proj: bind(g.q_w, &g.q_b); break;
    case LoraTarget::k_proj: bind(g.k_w, &g.k_b); break;
    case LoraTarget::v_proj: bind(g.v_w, &g.v_b); break;
    case LoraTarget::o_proj: bind(g.o_w, &g.o_b); break;
    case LoraTarget::gate_proj: bind(g.gate_w, nullptr); break;
    case LoraTarget::up_proj: bind(g.up_w, nullptr); break;
    case LoraTarget::down_proj: bind(g.down_w, nullptr); break;
    default: LF_ASSERT(false);
  }
}

// The forward pass, then the backward pass into `out`; returns the loss.
template <class T>
double forward_backward(const LlamaWeights<T>& w, const GptLora<T>* lora, const TokenBatch& batch,
                        const AttentionRequest& attention, Recompute recompute,
                        const GradOutputs<LlamaWeights<T>>& out) {
  const GptConfig& cfg = w.config;
  LlamaWeights<T>* d_w = out.d_weights;
  LlamaActivations<T> act;
  llama_forward(w, lora, batch, attention, keep_for_backward(recompute), act);
  const std::int64_t d = cfg.n_embd, rows = act.rows, e = cfg.head_dim(), f = cfg.llama.intermediate_size;
  const std::int64_t q = cfg.n_head * e, kv = cfg.llama.n_kv_head * e;
  auto buffer = [](std::int64_t n) { return Activation<T>(static_cast<std::size_t>(n), T(0)); };
  Activation<T> d_res = buffer(rows * d), d_ln = buffer(rows * d), d_x = buffer(rows * d), d_attn = buffer(rows * q);
  Activation<T> d_q = buffer(rows * q), d_k = buffer(rows * kv), d_v = buffer(rows * kv);
  Activation<T> h = buffer(rows * f), d_h = buffer(rows * f), d_gate = buffer(rows * f);

  Tensor* d_head = d_w == nullptr ? nullptr : cfg.llama.tie_word_embeddings ? &d_w->embed : &d_w->lm_head;
  const double loss = lm_head_loss(LmHeadLossParams<T>{rows, d, cfg.vocab_size, act.norm_out.data(),
                                                       w.head().template data<T>(), act.targets.data(), d_ln.data(),
                                                       slot<T>(d_head)});
  rms_norm_bwd(RmsNormParams<T>{rows, d, cfg.layer_norm_epsilon, act.residual.back().data(), w.norm.template data<T>(),
                                nullptr, act.norm_rstd.data(), d_ln.data(), d_res.data(),
                                slot<T>(d_w ? &d_w->norm : nullptr)});
  for (std::int64_t i = cfg.n_layer - 1; i >= 0; --i) {
    const auto& b = w.blocks[static_cast<std::size_t>(i)];
    auto& a = act.block(i);
    if (act.keep != Keep::all)  // recompute it; d_x is free scratch here
      llama_block_fwd(w, lora, i, nullptr, act, act.input(i).data(), a, h.data(), d_x.data(), static_cast<T*>(nullptr));
    LlamaBlockWeights* gb = d_w != nullptr ? &d_w->blocks[static_cast<std::size_t>(i)] : nullptr;
    // Backward of one projection: x its input, d_y its output gradient, d_x nullptr or overwritten.
    auto linear_bwd = [&](LoraTarget t, const T* x, const T* d_y, T* d_x_out) {
      auto p = llama_module_params(w, lora, i, t, rows);
      p.x = x;
      p.d_y = d_y;
      p.d_x = d_x_out;
      if (p.rank > 0 && out.d_lora != nullptr) {
        auto& g = (*out.d_lora)[static_cast<std::size_t>(i)][static_cast<std::size_t>(t)];
        p.d_lora_a = g->a.template data<T>();
        p.d_lora_b = g->b.template data<T>();
      }
      if (gb != nullptr) bind_base_grads(p, *gb, t);
      lora_linear_bwd(p);
    };

    // MLP: d_res is d loss / d (block output) = d loss / d (down_proj output).
    swiglu_fwd(SwigluParams<T>{rows * f, a.gate.data(), a.up.data(), h.data(), nullptr, nullptr, nullptr});
    linear_bwd(LoraTarget::down_proj, h.data(), d_res.data(), d_h.data());
    swiglu_bwd(SwigluParams<T>{rows * f, a.gate.data(), a.up.data(), nullptr, d_h.data(), d_gate.data(), d_h.data()});
    linear_bwd(LoraTarget::gate_proj, a.norm2.data(), d_gate.data(), d_ln.data());
    linear_bwd(LoraTarget::up_proj, a.norm2.data(), d_h.data(), d_x.data());  // d_h now holds d_up
    add_to(d_ln.data(), d_x);
    rms_norm_bwd(RmsNormParams<T>{rows, d, cfg.layer_norm_epsilon, a.x_mid.data(), b.post_norm.template data<T>(),
                                  nullptr, a.rstd2.data(), d_ln.data(), d_res.data(),
                                  slot<T>(gb ? &gb->post_norm : nullptr)});  // d loss / d x_mid

    // Attention.
    linear_bwd(LoraTarget::o_proj, a.attn.data(), d_res.data(), d_attn.data());
    AttentionParams<T> attn = llama_attention_params<T>(cfg, batch.batch, batch.seq_len);
    attn.q = a.q.data(), attn.k = a.k.data(), attn.v = a.v.data(), attn.o = a.attn.data(), attn.lse = a.lse.data();
    attn.d_o = d_attn.data(), attn.d_q = d_q.data(), attn.d_k = d_k.data(), attn.d_v = d_v.data();
    planned_attention_bwd(attn, act.plan[static_cast<std::size_t>(i)]);
    rope_bwd(RopeParams<T>{rows, cfg.n_head, &act.rope, d_q.data()});
    rope_bwd(RopeParams<T>{rows, cfg.llama.n_kv_head, &act.rope, d_k.data()});
    const bool to_input = i > 0 || d_w != nullptr;  // the embeddings are frozen unless d_w is wanted
    linear_bwd(LoraTarget::q_proj, a.norm1.data(), d_q.data(), to_input ? d_ln.data() : nullptr);
    linear_bwd(LoraTarget::k_proj, a.norm1.data(), d_k.data(), to_input ? d_x.data() : nullptr);
    if (to_input) add_to(d_ln.data(), d_x);
    linear_bwd(LoraTarget::v_proj, a.norm1.data(), d_v.data(), to_input ? d_x.data() : nullptr);
    if (!to_input) break;
    add_to(d_ln.data(), d_x);
    rms_norm_bwd(RmsNormParams<T>{rows, d, cfg.layer_norm_epsilon, act.input(i).data(),
                                  b.input_norm.template data<T>(), nullptr, a.rstd1.data(), d_ln.data(), d_res.data(),
                                  slot<T>(gb ? &gb->input_norm : nullptr)});  // d loss / d (block input)
  }
  if (d_w != nullptr) token_embedding_bwd(batch, d, d_res.data(), d_w->embed.template data<T>(), static_cast<T*>(nullptr));
  if (out.plan != nullptr) *out.plan = std::move(act.plan);
  return loss;
}

}  // namespace

template <class T>
GptLossGrad<T> llama_loss_and_grad(const LlamaWeights<T>& w, const GptLora<T>& lora, const TokenBatch& batch,
                                   const AttentionRequest& attention, Recompute recompute) {
  validate_tokens(batch, w.config);
  validate_gpt_lora(lora, w.config, "adapter");
  GptLossGrad<T> out;
  out.d_lora = zero_grads(lora);
  out.loss = forward_backward(w, &lora, batch, attention, recompute,
                              GradOutputs<LlamaWeights<T>>{&out.d_lora, nullptr, &out.plan});
  return out;
}

template <class T>
LlamaFullGrad<T> llama_loss_and_full_grad(const LlamaWeights<T>& w, const GptLora<T>* lora, const TokenBatch& batch,
                                          Recompute recompute) {
  validate_tokens(batch, w.config);
  LlamaFullGrad<T> out;
  out.d_weights = zero_llama_weights<T>(w.config);
  if (lora != nullptr) {
    validate_gpt_lora(*lora, w.config, "adapter");
    out.d_lora = zero_grads(*lora);
  }
  out.loss = forward_backward(w, lora, batch, AttentionRequest{}, recompute,
                              GradOutputs<LlamaWeights<T>>{lora != nullptr ? &out.d_lora : nullptr, &out.d_weights});
  return out;
}

#define LORAFAST_INSTANTIATE(T)                                                                                 \
  template GptLossGrad<T> llama_loss_and_grad<T>(const LlamaWeights<T>&, const GptLora<T>&, const TokenBatch&, \
                                                 const AttentionRequest&, Recompute);                          \
  template LlamaFullGrad<T> llama_loss_and_full_grad<T>(const LlamaWeights<T>&, const GptLora<T>*, const TokenBatch&, \
                                                        Recompute);
LORAFAST_INSTANTIATE(float)
LORAFAST_INSTANTIATE(double)
#undef LORAFAST_INSTANTIATE

}  // namespace lorafast
