// Llama-family forward pass with LoRA (pre-norm blocks: RMSNorm, q/k/v projections,
// RoPE on q and k, grouped-query causal attention, o_proj, RMSNorm, SwiGLU MLP) and
// the forward-only loss.
#include "lorafast/llama.hpp"
#include "model/llama_activations.hpp"
#include "lorafast/planned_attention.hpp"
#include "model/llama_attention.hpp"
#include "model/lm_head_loss.hpp"
#include "model/rms_norm.hpp"
#include "model/swiglu.hpp"

namespace lorafast {
namespace {

template <class T>
const T* ptr(const Tensor& t) {
  return t.empty() ? nullptr : t.template data<T>();
}

template <class Vector>
void resize(Vector& v, std::int64_t n) {
  v.resize(static_cast<std::size_t>(n));
}

template <class T>
void allocate(LlamaBlockActivations<T>& a, const GptConfig& c, std::int64_t rows, std::int64_t lse_size) {
  const std::int64_t d = c.n_embd, q = c.n_head * c.head_dim(), kv = c.llama.n_kv_head * c.head_dim();
  resize(a.rstd1, rows);
  resize(a.rstd2, rows);
  for (auto* v : {&a.norm1, &a.x_mid, &a.norm2}) resize(*v, rows * d);
  resize(a.q, rows * q);
  resize(a.attn, rows * q);
  resize(a.k, rows * kv);
  resize(a.v, rows * kv);
  resize(a.lse, lse_size);
  resize(a.gate, rows * c.llama.intermediate_size);
  resize(a.up, rows * c.llama.intermediate_size);
}

template <class T>
void linear(const LlamaWeights<T>& w, const GptLora<T>* lora, std::int64_t layer, LoraTarget target,
            std::int64_t rows, const T* x, T* y) {
  auto p = llama_module_params(w, lora, layer, target, rows);
  p.x = x;
  p.y = y;
  lora_linear_fwd(p);
}

template <class T>
LlamaActivations<T> forward_only(const LlamaWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                                 const AttentionRequest& attention) {
  validate_tokens(batch, weights.config);
  if (lora != nullptr) validate_gpt_lora(*lora, weights.config, "adapter");
  LlamaActivations<T> act;
  llama_forward(weights, lora, batch, attention, Keep::last, act);
  return act;
}

}  // namespace

template <class T>
LoraLinearParams<T> llama_module_params(const LlamaWeights<T>& weights, const GptLora<T>* lora, std::int64_t layer,
                                        LoraTarget target, std::int64_t rows) {
  const auto& b = weights.blocks[static_cast<std::size_t>(layer)];
  const auto dims = lora_target_dims(target, weights.config);
  LoraLinearParams<T> p;
  p.rows = rows;
  p.in = dims.in;
  p.out = dims.out;
  switch (target) {
    case LoraTarget::q_proj: p.w = ptr<T>(b.q_w), p.bias = ptr<T>(b.q_b); break;
    case LoraTarget::k_proj: p.w = ptr<T>(b.k_w), p.bias = ptr<T>(b.k_b); break;
    case LoraTarget::v_proj: p.w = ptr<T>(b.v_w), p.bias = ptr<T>(b.v_b); break;
    case LoraTarget::o_proj: p.w = ptr<T>(b.o_w), p.bias = ptr<T>(b.o_b); break;
    case LoraTarget::gate_proj: p.w = ptr<T>(b.gate_w); break;
    case LoraTarget::up_proj: p.w = ptr<T>(b.up_w); break;
    case LoraTarget::down_proj: p.w = ptr<T>(b.down_w); break;
    default: LF_ASSERT(false);
  }
  attach_adapter(p, lora, layer, target);
  return p;
}

template <class T>
void llama_block_fwd(const LlamaWeights<T>& w, const GptLora<T>* lora, std::int64_t i, const AttentionRequest* request,
                     LlamaActivations<T>& act, const T* x, LlamaBlockActivations<T>& a, T* h, T* proj, T* out) {
  const GptConfig& cfg = w.config;
  const std::int64_t d = cfg.n_embd, rows = act.rows, f = cfg.llama.intermediate_size;
  const auto& b = w.blocks[static_cast<std::size_t>(i)];
  rms_norm_fwd(RmsNormParams<T>{rows, d, cfg.layer_norm_epsilon, x, b.input_norm.template data<T>(), a.norm1.data(),
                                a.rstd1.data(), nullptr, nullptr, nullptr});
  linear(w, lora, i, LoraTarget::q_proj, rows, a.norm1.data(), a.q.data());
  linear(w, lora, i, LoraTarget::k_proj, rows, a.norm1.data(), a.k.data());
  linear(w, lora, i, LoraTarget::v_proj, rows, a.norm1.data(), a.v.data());
  rope_fwd(RopeParams<T>{rows, cfg.n_head, &act.rope, a.q.data()});
  rope_fwd(RopeParams<T>{rows, cfg.llama.n_kv_head, &act.rope, a.k.data()});
  AttentionParams<T> attn = llama_attention_params<T>(cfg, act.batch, act.seq_len);
  attn.q = a.q.data();
  attn.k = a.k.data();
  attn.v = a.v.data();
  attn.o = a.attn.data();
  attn.lse = a.lse.data();
  block_attention_fwd(attn, request, i, act.plan[static_cast<std::size_t>(i)]);
  linear(w, lora, i, LoraTarget::o_proj, rows, a.attn.data(), proj);
  add(x, proj, a.x_mid.data(), rows * d);
  rms_norm_fwd(RmsNormParams<T>{rows, d, cfg.layer_norm_epsilon, a.x_mid.data(), b.post_norm.template data<T>(),
                                a.norm2.data(), a.rstd2.data(), nullptr, nullptr, nullptr});
  linear(w, lora, i, LoraTarget::gate_proj, rows, a.norm2.data(), a.gate.data());
  linear(w, lora, i, LoraTarget::up_proj, rows, a.norm2.data(), a.up.data());
  if (request == nullptr) return;
  swiglu_fwd(SwigluParams<T>{rows * f, a.gate.data(), a.up.data(), h, nullptr, nullptr, nullptr});
  linear(w, lora, i, LoraTarget::down_proj, rows, h, proj);
  add(a.x_mid.data(), proj, out, rows * d);
}

template <class T>
void llama_forward(const LlamaWeights<T>& w, const GptLora<T>* lora, const TokenBatch& batch,
                   const AttentionRequest& attention, Keep keep, LlamaActivations<T>& act) {
  const GptConfig& cfg = w.config;
  const std::int64_t window = cfg.llama.sliding_window;
  LF_CHECK(window == 0 || batch.seq_len <= window, ErrorKind::cannot_meet, "sequence length ", batch.seq_len,
           " exceeds the model's sliding window ", window, " (sliding-window masking is not implemented; use a "
           "sequence length of at most ", window, ")");
  const std::int64_t d = cfg.n_embd, rows = batch.predicted(), layers = cfg.n_layer, e = cfg.head_dim();
  const std::int64_t f = cfg.llama.intermediate_size;
  act.batch = batch.batch;
  act.seq_len = batch.seq_len;
  act.rows = rows;
  act.rope = make_rope_table<T>(cfg.llama.rope, e, batch.seq_len);
  act.lay_out(keep, layers, rows * d, [&](LlamaBlockActivations<T>& b) {
    allocate(b, cfg, rows, batch.batch * cfg.n_head * batch.seq_len);
  });
  T* x0 = act.input(0).data();
#pragma omp parallel for schedule(static)
  for (std::int64_t row = 0; row < rows; ++row) {
    const T* tok = w.embed.template data<T>() + static_cast<std::int64_t>(batch.at(row / batch.seq_len, row % batch.seq_len)) * d;
    std::copy(tok, tok + d, x0 + row * d);
  }

  Activation<T> h(static_cast<std::size_t>(rows * f), T(0)), proj(static_cast<std::size_t>(rows * d), T(0));
  act.plan.assign(static_cast<std::size_t>(layers), {});
  for (std::int64_t i = 0; i < layers; ++i)
    llama_block_fwd(w, lora, i, &attention, act, act.input(i).data(), act.block(i), h.data(), proj.data(),
                    act.input(i + 1).data());
  resize(act.norm_rstd, rows);
  resize(act.norm_out, rows * d);
  rms_norm_fwd(RmsNormParams<T>{rows, d, cfg.layer_norm_epsilon, act.input(layers).data(), w.norm.template data<T>(),
                                act.norm_out.data(), act.norm_rstd.data(), nullptr, nullptr, nullptr});
  resize(act.targets, rows);
  for (std::int64_t n = 0; n < batch.batch; ++n)
    for (std::int64_t t = 0; t < batch.seq_len; ++t)
      act.targets[static_cast<std::size_t>(n * batch.seq_len + t)] = batch.at(n, t + 1);
}

template <class T>
double llama_loss(const LlamaWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                  const AttentionRequest& attention) {
  const auto act = forward_only(weights, lora, batch, attention);
  return lm_head_loss(LmHeadLossParams<T>{act.rows, weights.config.n_embd, weights.config.vocab_size,
                                          act.norm_out.data(), weights.head().template data<T>(),
                                          act.targets.data(), nullptr});
}

template <class T>
GptAttentionPlan llama_attention_plan(const LlamaWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                                      const AttentionRequest& attention) {
  return forward_only(weights, lora, batch, attention).plan;
}

#define LORAFAST_INSTANTIATE(T)                                                                                  \
  template void llama_forward<T>(const LlamaWeights<T>&, const GptLora<T>*, const TokenBatch&,                   \
                                 const AttentionRequest&, Keep, LlamaActivations<T>&);                           \
  template void llama_block_fwd<T>(const LlamaWeights<T>&, const GptLora<T>*, std::int64_t, const AttentionRequest*, \
                                   LlamaActivations<T>&, const T*, LlamaBlockActivations<T>&, T*, T*, T*);       \
  template LoraLinearParams<T> llama_module_params<T>(const LlamaWeights<T>&, const GptLora<T>*, std::int64_t,   \
                                                      LoraTarget, std::int64_t);                                 \
  template double llama_loss<T>(const LlamaWeights<T>&, const GptLora<T>*, const TokenBatch&, const AttentionRequest&); \
  template GptAttentionPlan llama_attention_plan<T>(const LlamaWeights<T>&, const GptLora<T>*, const TokenBatch&,  \
                                                    const AttentionRequest&);
LORAFAST_INSTANTIATE(float)
LORAFAST_INSTANTIATE(double)
#undef LORAFAST_INSTANTIATE

}  // namespace lorafast
