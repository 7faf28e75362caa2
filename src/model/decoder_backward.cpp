// Backward pass of the decoder's loss, one for every family: one pass serves
// fine-tuning (gradients of the LoRA adapters only) and pretraining (gradients of
// every base weight too). The final norm, then per block (last first) the MLP's
// output norm (post_norms), output projection, its activation, its input
// projections, the norm, the attention's output norm (post_norms) and projection,
// attention (the forward's plan), the inverse RoPE
// rotation of d_q and d_k, the q/k/v projections and the norm, the residual
// gradient accumulating in place; with base-weight gradients it goes on into the
// embeddings, otherwise block 0 stops at its adapters.
#include "lorafast/llama.hpp"
#include "lorafast/planned_attention.hpp"
#include "model/decoder_activations.hpp"
#include "model/lm_head_loss.hpp"
#include "model/mlp_activation.hpp"
#include "model/token_embedding.hpp"

namespace lorafast {
namespace {

template <class T>
void add_to(T* acc, const T* x, std::int64_t n) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) acc[i] += x[i];
}

// The forward pass, then the backward pass into `out`; returns the loss.
template <class T>
double forward_backward(const DecoderView<T>& m, const GptLora<T>* lora, const TokenBatch& batch,
                        const AttentionRequest& attention, Recompute recompute, const GradOutputs& out) {
  const DecoderSpec& s = m.spec;
  DecoderTensors<Tensor>* d_w = out.d_weights;
  DecoderActivations<T> act;
  decoder_forward(m, lora, batch, attention, keep_for_backward(recompute), act);
  const std::int64_t d = s.dim, rows = act.rows, f = s.ffn;
  const std::int64_t qkv_size = rows * (s.q_width() + 2 * s.kv_width()), mlp_size = rows * f * s.mlp_in_parts();
  auto buffer = [](std::int64_t n) { return Activation<T>(static_cast<std::size_t>(n), T(0)); };
  Activation<T> d_res = buffer(rows * d), d_ln = buffer(rows * d), d_x = buffer(rows * d);
  Activation<T> d_attn = buffer(rows * s.q_width()), h = buffer(rows * f);
  // The gradient of the MLP's input projections, then of q | k | v (laid out as the activations).
  Activation<T> d_wide = buffer(std::max(qkv_size, mlp_size));
  Activation<T> d_pre = buffer(s.qk_norm ? rows * (s.q_width() + s.kv_width()) : 0);  // of q and k before their norms

  const double loss = decoder_head_loss<T>(m, act, d_ln.data(), d_w != nullptr ? data<T>(d_w->head) : nullptr);
  auto final_norm = norm_params<T>(s, m.tensors.final_norm, rows);
  final_norm.x = act.residual.back().data(), final_norm.mean = act.final_mean.data();
  final_norm.rstd = act.final_rstd.data(), final_norm.d_y = d_ln.data(), final_norm.d_x = d_res.data();
  if (d_w != nullptr) final_norm.d_weight = data<T>(d_w->final_norm.weight), final_norm.d_bias = data<T>(d_w->final_norm.bias);
  norm_bwd(final_norm);

  for (std::int64_t i = s.layers - 1; i >= 0; --i) {
    const auto& b = m.tensors.blocks[static_cast<std::size_t>(i)];
    auto& a = act.block(i);
    if (act.keep != Keep::all)  // recompute it; d_x is free scratch here
      decoder_block_fwd(m, lora, i, nullptr, act, act.input(i).data(), a, h.data(), d_x.data(), static_cast<T*>(nullptr));
    BlockTensors<Tensor>* gb = d_w != nullptr ? &d_w->blocks[static_cast<std::size_t>(i)] : nullptr;
    // Backward of one projection: x its input, d_y its output gradient, d_x nullptr or overwritten.
    auto linear_bwd = [&](const LinearTensors<const Tensor>& l, const LinearTensors<Tensor>* g, const T* x,
                          const T* d_y, T* d_x_out) {
      auto p = linear_params(l, lora, i, rows);
      p.x = x;
      p.d_y = d_y;
      p.d_x = d_x_out;
      if (p.rank > 0 && out.d_lora != nullptr) {
        auto& grad = (*out.d_lora)[static_cast<std::size_t>(i)][static_cast<std::size_t>(l.target)];
        p.d_lora_a = grad->a.template data<T>();
        p.d_lora_b = grad->b.template data<T>();
      }
      if (g != nullptr) p.d_w = data<T>(g->w), p.d_bias = data<T>(g->bias);
      lora_linear_bwd(p);
    };
    // Backward of `parts` projections of one input x, output gradients d_y(j):
    // d loss / d x into d_in (nullptr: not needed), d_x as scratch.
    auto inputs_bwd = [&](const auto& parts, const auto* grads, int count, const T* x, auto d_y, T* d_in) {
      for (int j = 0; j < count; ++j) {
        const auto jj = static_cast<std::size_t>(j);
        linear_bwd(parts[jj], grads != nullptr ? &(*grads)[jj] : nullptr, x, d_y(j),
                   j == 0 || d_in == nullptr ? d_in : d_x.data());
        if (j > 0 && d_in != nullptr) add_to(d_in, d_x.data(), rows * d);
      }
    };
    auto norm_grads = [&](NormParams<T>& p, NormTensors<Tensor>* g) {
      if (g != nullptr) p.d_weight = data<T>(g->weight), p.d_bias = data<T>(g->bias);
    };

    // With post_norms, d loss / d (output projection's output) into d_ln from d_y, through the norm `n`.
    auto output_norm_bwd = [&](const NormTensors<const Tensor>& n, NormTensors<Tensor>* g, const Activation<T>& x,
                               Activation<T>& rstd, const T* d_y) {
      std::fill(d_ln.begin(), d_ln.end(), T(0));  // norm_bwd accumulates
      auto p = norm_params<T>(s, n, rows);
      p.x = x.data(), p.rstd = rstd.data(), p.d_y = d_y, p.d_x = d_ln.data();
      norm_grads(p, g);
      norm_bwd(p);
      return static_cast<const T*>(d_ln.data());
    };

    // MLP: d_res is d loss / d (block output) = d loss / d (MLP output projection's output, or its norm's).
    T* d_h = d_wide.data() + (s.mlp_in_parts() - 1) * rows * f;  // aliases the last input's gradient
    mlp_activation_fwd(MlpActivationParams<T>{s.mlp, rows * f, a.mlp_in.data(), h.data(), nullptr, nullptr});
    const T* d_mlp_out = s.post_norms ? output_norm_bwd(b.mlp_out_norm, gb ? &gb->mlp_out_norm : nullptr, a.mlp_out,
                                                        a.mlp_out_rstd, d_res.data())
                                      : d_res.data();
    linear_bwd(b.mlp_out, gb ? &gb->mlp_out : nullptr, h.data(), d_mlp_out, d_h);
    mlp_activation_bwd(MlpActivationParams<T>{s.mlp, rows * f, a.mlp_in.data(), nullptr, d_h, d_wide.data()});
    inputs_bwd(b.mlp_in, gb ? &gb->mlp_in : nullptr, s.mlp_in_parts(), a.norm2.data(),
               [&](int j) { return d_wide.data() + j * rows * f; }, d_ln.data());
    auto norm2 = norm_params<T>(s, b.mlp_norm, rows);
    norm2.x = a.x_mid.data(), norm2.mean = a.mean2.data(), norm2.rstd = a.rstd2.data();
    norm2.d_y = d_ln.data(), norm2.d_x = d_res.data();
    norm_grads(norm2, gb ? &gb->mlp_norm : nullptr);
    norm_bwd(norm2);  // d_res is now d loss / d x_mid

    // Attention.
    const T* d_attn_out = s.post_norms ? output_norm_bwd(b.attn_out_norm, gb ? &gb->attn_out_norm : nullptr,
                                                         a.attn_out, a.attn_out_rstd, d_res.data())
                                       : d_res.data();
    linear_bwd(b.o, gb ? &gb->o : nullptr, a.attn.data(), d_attn_out, d_attn.data());
    const auto qkv = qkv_view(s, rows, static_cast<const T*>(a.qkv.data()));
    const auto d_qkv = qkv_view(s, rows, d_wide.data());
    AttentionParams<T> attn = act.attention_params(s, i);
    attn.q = qkv.q, attn.k = qkv.k, attn.v = qkv.v, attn.o = a.attn.data(), attn.lse = a.lse.data();
    attn.d_o = d_attn.data(), attn.d_q = d_qkv.q, attn.d_k = d_qkv.k, attn.d_v = d_qkv.v;
    planned_attention_bwd(attn, act.plan[static_cast<std::size_t>(i)]);
    if (s.rotary(i)) {
      rope_bwd(act.rope_params(s, i, s.heads, d_qkv.q));
      rope_bwd(act.rope_params(s, i, s.kv_heads, d_qkv.k));
    }
    if (s.qk_norm) {
      std::fill(d_pre.begin(), d_pre.end(), T(0));  // norm_bwd accumulates
      for (int j = 0; j < 2; ++j) {
        auto p = head_norm_params<T>(s, b.qk_norm[static_cast<std::size_t>(j)], rows, j);
        p.x = projection_out(s, qkv, static_cast<const T*>(a.qk_pre.data()), rows, j);
        p.rstd = a.qk_rstd.data() + j * rows * s.heads;
        p.d_y = d_qkv.part(j);
        p.d_x = projection_out(s, d_qkv, d_pre.data(), rows, j);
        if (gb != nullptr) p.d_weight = data<T>(gb->qk_norm[static_cast<std::size_t>(j)].weight);
        norm_bwd(p);
      }
    }
    const bool to_input = i > 0 || d_w != nullptr;  // the embeddings are frozen unless d_w is wanted
    inputs_bwd(b.qkv, gb ? &gb->qkv : nullptr, s.qkv_parts(), a.norm1.data(),
               [&](int j) { return projection_out(s, d_qkv, d_pre.data(), rows, j); }, to_input ? d_ln.data() : nullptr);
    if (!to_input) break;
    auto norm1 = norm_params<T>(s, b.attn_norm, rows);
    norm1.x = act.input(i).data(), norm1.mean = a.mean1.data(), norm1.rstd = a.rstd1.data();
    norm1.d_y = d_ln.data(), norm1.d_x = d_res.data();
    norm_grads(norm1, gb ? &gb->attn_norm : nullptr);
    norm_bwd(norm1);  // d loss / d (block input)
  }
  if (d_w != nullptr) {
    if (s.scale_embedding)
      for (std::int64_t r = 0; r < rows; ++r) scale_embedding(s, d_res.data() + r * d);  // x0 = embed * scale
    token_embedding_bwd(batch, act.positions, d, d_res.data(), data<T>(d_w->embed), data<T>(d_w->positions));
  }
  if (out.d_lora != nullptr && lora != nullptr) mask_c_attn_rows(*out.d_lora, lora->config);
  if (out.plan != nullptr) *out.plan = std::move(act.plan);
  return loss;
}

template <class W>
GptLossGrad<typename W::value_type> loss_and_grad(const W& w, const GptLora<typename W::value_type>& lora,
                                                  const TokenBatch& batch, const AttentionRequest& attention,
                                                  Recompute recompute) {
  validate_tokens(batch, w.config);
  validate_gpt_lora(lora, w.config, "adapter");
  GptLossGrad<typename W::value_type> out;
  out.d_lora = zero_grads(lora);
  out.loss = forward_backward(decoder_view(w), &lora, batch, attention, recompute,
                              GradOutputs{&out.d_lora, nullptr, &out.plan});
  return out;
}

// Out: GptFullGrad or LlamaFullGrad, whose d_weights starts as `zero`.
template <class Out, class W>
Out loss_and_full_grad(const W& w, const GptLora<typename W::value_type>* lora, const TokenBatch& batch,
                       Recompute recompute, W zero) {
  validate_tokens(batch, w.config);
  Out out;
  out.d_weights = std::move(zero);
  if (lora != nullptr) {
    validate_gpt_lora(*lora, w.config, "adapter");
    out.d_lora = zero_grads(*lora);
  }
  auto d_weights = decoder_tensors(out.d_weights);
  out.loss = forward_backward(decoder_view(w), lora, batch, AttentionRequest{}, recompute,
                              GradOutputs{lora != nullptr ? &out.d_lora : nullptr, &d_weights});
  return out;
}

}  // namespace

template <class T>
GptLossGrad<T> gpt_loss_and_grad(const GptWeights<T>& w, const GptLora<T>& lora, const TokenBatch& batch,
                                 const AttentionRequest& attention, Recompute recompute) {
  return loss_and_grad(w, lora, batch, attention, recompute);
}

template <class T>
GptLossGrad<T> llama_loss_and_grad(const LlamaWeights<T>& w, const GptLora<T>& lora, const TokenBatch& batch,
                                   const AttentionRequest& attention, Recompute recompute) {
  return loss_and_grad(w, lora, batch, attention, recompute);
}

template <class T>
GptFullGrad<T> gpt_loss_and_full_grad(const GptWeights<T>& w, const GptLora<T>* lora, const TokenBatch& batch,
                                       Recompute recompute) {
  return loss_and_full_grad<GptFullGrad<T>>(w, lora, batch, recompute, zero_gpt_weights<T>(w.config));
}

template <class T>
LlamaFullGrad<T> llama_loss_and_full_grad(const LlamaWeights<T>& w, const GptLora<T>* lora, const TokenBatch& batch,
                                          Recompute recompute) {
  return loss_and_full_grad<LlamaFullGrad<T>>(w, lora, batch, recompute, zero_llama_weights<T>(w.config));
}

#define LORAFAST_INSTANTIATE(T)                                                                                 \
  template GptLossGrad<T> gpt_loss_and_grad<T>(const GptWeights<T>&, const GptLora<T>&, const TokenBatch&,     \
                                               const AttentionRequest&, Recompute);                            \
  template GptLossGrad<T> llama_loss_and_grad<T>(const LlamaWeights<T>&, const GptLora<T>&, const TokenBatch&, \
                                                 const AttentionRequest&, Recompute);                          \
  template GptFullGrad<T> gpt_loss_and_full_grad<T>(const GptWeights<T>&, const GptLora<T>*, const TokenBatch&, \
                                                    Recompute);                                                \
  template LlamaFullGrad<T> llama_loss_and_full_grad<T>(const LlamaWeights<T>&, const GptLora<T>*,             \
                                                        const TokenBatch&, Recompute);
LORAFAST_INSTANTIATE(float)
LORAFAST_INSTANTIATE(double)
#undef LORAFAST_INSTANTIATE

}  // namespace lorafast
