// The decoder's forward pass with LoRA, one for every family: the token embedding
// (plus a learned position table, or scaled), then per block the norm, the q/k/v
// projections (RoPE on q and k), causal attention planned per layer and head, the
// output projection (and its norm, with post_norms), the norm, the MLP (and its
// output's norm); the final norm. And the forward-only loss and
// attention plan of GPT-2 and the Llama family.
#include <algorithm>

#include "lorafast/llama.hpp"
#include "lorafast/planned_attention.hpp"
#include "model/decoder_activations.hpp"
#include "model/lm_head_loss.hpp"
#include "model/mlp_activation.hpp"

namespace lorafast {
namespace {

template <class Vector>
void resize(Vector& v, std::int64_t n) {
  v.resize(static_cast<std::size_t>(n));
}

// x0[n, t] = embed[token] (+ positions[the row's position]) (or embed[token] * embedding_scale).
template <class T>
void embed_fwd(const DecoderView<T>& m, const TokenBatch& batch, const std::vector<std::int32_t>& row_positions,
               T* x) {
  const std::int64_t d = m.spec.dim, tlen = batch.seq_len;
  const T* positions = data<T>(m.tensors.positions);
#pragma omp parallel for schedule(static)
  for (std::int64_t row = 0; row < batch.batch * tlen; ++row) {
    const std::int64_t n = row / tlen, t = row % tlen;
    table_row(*m.tensors.embed, batch.at(n, t), x + row * d);
    if (m.spec.scale_embedding) scale_embedding(m.spec, x + row * d);
    if (positions == nullptr) continue;
    const T* pos = positions + (row_positions.empty() ? t : row_positions[static_cast<std::size_t>(row)]) * d;
    for (std::int64_t c = 0; c < d; ++c) x[row * d + c] += pos[c];
  }
}

// y = the norm `n` (post_norms: of the attention's or the MLP's output) of x, its rstd kept.
template <class T>
void output_norm_fwd(const DecoderSpec& s, const NormTensors<const Tensor>& n, std::int64_t rows, const T* x, T* rstd,
                     T* y) {
  auto p = norm_params<T>(s, n, rows);
  p.x = x, p.y = y, p.rstd = rstd;
  norm_fwd(p);
}

template <class T>
void allocate(BlockActivations<T>& a, const DecoderSpec& s, std::int64_t rows, std::int64_t lse_size) {
  const std::int64_t d = s.dim, stats = s.norm == NormKind::layer_norm ? rows : 0;
  resize(a.mean1, stats);
  resize(a.mean2, stats);
  resize(a.rstd1, rows);
  resize(a.rstd2, rows);
  for (auto* v : {&a.norm1, &a.x_mid, &a.norm2}) resize(*v, rows * d);
  for (auto* v : {&a.attn_out, &a.mlp_out}) resize(*v, s.post_norms ? rows * d : 0);
  for (auto* v : {&a.attn_out_rstd, &a.mlp_out_rstd}) resize(*v, s.post_norms ? rows : 0);
  resize(a.qkv, rows * (s.q_width() + 2 * s.kv_width()));
  resize(a.qk_pre, s.qk_norm ? rows * (s.q_width() + s.kv_width()) : 0);
  resize(a.qk_rstd, s.qk_norm ? rows * (s.heads + s.kv_heads) : 0);
  resize(a.attn, rows * s.q_width());
  resize(a.lse, lse_size);
  resize(a.mlp_in, rows * s.ffn * s.mlp_in_parts());
}

template <class T>
DecoderActivations<T> forward_only(const DecoderView<T>& m, const GptLora<T>* lora, const TokenBatch& batch,
                                   const AttentionRequest& attention) {
  validate_tokens(batch, *m.config);
  if (lora != nullptr) validate_gpt_lora(*lora, *m.config, "adapter");
  DecoderActivations<T> act;
  decoder_forward(m, lora, batch, attention, Keep::last, act);
  return act;
}

template <class T>
double loss(const DecoderView<T>& m, const GptLora<T>* lora, const TokenBatch& batch,
            const AttentionRequest& attention) {
  const auto act = forward_only(m, lora, batch, attention);
  return decoder_head_loss<T>(m, act, nullptr, nullptr);
}

}  // namespace

void validate_tokens(const TokenBatch& batch, const GptConfig& config) {
  constexpr auto bad = ErrorKind::bad_input;
  LF_CHECK(batch.batch >= 1, bad, "token batch: N must be at least 1, got ", batch.batch);
  LF_CHECK(batch.seq_len >= 1 && batch.seq_len <= config.n_positions, bad, "token batch: sequence length ",
           batch.seq_len, " is outside [1, n_positions = ", config.n_positions, "]");
  LF_CHECK(static_cast<std::int64_t>(batch.tokens.size()) == batch.batch * (batch.seq_len + 1), bad,
           "token batch: ", batch.tokens.size(), " tokens for N = ", batch.batch, " windows of T + 1 = ",
           batch.seq_len + 1);
  for (std::size_t i = 0; i < batch.tokens.size(); ++i)
    LF_CHECK(batch.tokens[i] >= 0 && batch.tokens[i] < config.vocab_size, bad, "token batch: token ", i, " is ",
             batch.tokens[i], ", outside the vocabulary [0, ", config.vocab_size, ")");
  const std::int64_t rows = batch.predicted();
  LF_CHECK(batch.targets.empty() || static_cast<std::int64_t>(batch.targets.size()) == rows, bad, "token batch: ",
           batch.targets.size(), " targets for N * T = ", rows, " rows");
  for (std::size_t i = 0; i < batch.targets.size(); ++i)
    LF_CHECK(batch.targets[i] == no_target || (batch.targets[i] >= 0 && batch.targets[i] < config.vocab_size), bad,
             "token batch: target ", i, " is ", batch.targets[i], ", neither ", no_target,
             " (none) nor in the vocabulary [0, ", config.vocab_size, ")");
  LF_CHECK(batch.loss_tokens >= 0, bad, "token batch: loss_tokens must be >= 0, got ", batch.loss_tokens);
  check_cu_seqlens(batch.cu_seqlens, batch.batch, batch.seq_len, bad, "token batch");
}

std::int64_t TokenBatch::targeted() const {
  if (targets.empty()) return predicted();
  return std::count_if(targets.begin(), targets.end(), [](std::int32_t t) { return t != no_target; });
}

std::vector<std::int32_t> TokenBatch::positions() const {
  std::vector<std::int32_t> out;
  if (cu_seqlens.empty()) return out;
  out.resize(static_cast<std::size_t>(predicted()));
  for (std::size_t d = 0; d + 1 < cu_seqlens.size(); ++d)
    for (std::int64_t r = cu_seqlens[d]; r < cu_seqlens[d + 1]; ++r)
      out[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(r - cu_seqlens[d]);
  return out;
}

template <class T>
void decoder_block_fwd(const DecoderView<T>& m, const GptLora<T>* lora, std::int64_t i,
                       const AttentionRequest* request, DecoderActivations<T>& act, const T* x, BlockActivations<T>& a,
                       T* h, T* proj, T* out) {
  const DecoderSpec& s = m.spec;
  const std::int64_t d = s.dim, rows = act.rows;
  const auto& b = m.tensors.blocks[static_cast<std::size_t>(i)];
  auto norm1 = norm_params<T>(s, b.attn_norm, rows);
  norm1.x = x, norm1.y = a.norm1.data(), norm1.mean = a.mean1.data(), norm1.rstd = a.rstd1.data();
  norm_fwd(norm1);
  const auto qkv = qkv_view(s, rows, a.qkv.data());
  for (int j = 0; j < s.qkv_parts(); ++j)
    linear_fwd(b.qkv[static_cast<std::size_t>(j)], lora, i, rows, a.norm1.data(),
               projection_out(s, qkv, a.qk_pre.data(), rows, j));
  for (int j = 0; s.qk_norm && j < 2; ++j) {
    auto p = head_norm_params<T>(s, b.qk_norm[static_cast<std::size_t>(j)], rows, j);
    p.x = projection_out(s, qkv, a.qk_pre.data(), rows, j);
    p.y = qkv.part(j);
    p.rstd = a.qk_rstd.data() + j * rows * s.heads;
    norm_fwd(p);
  }
  if (s.rotary(i)) {
    rope_fwd(act.rope_params(s, i, s.heads, qkv.q));
    rope_fwd(act.rope_params(s, i, s.kv_heads, qkv.k));
  }
  AttentionParams<T> attn = act.attention_params(s, i);
  attn.q = qkv.q;
  attn.k = qkv.k;
  attn.v = qkv.v;
  attn.o = a.attn.data();
  attn.lse = a.lse.data();
  block_attention_fwd(attn, request, i, act.plan[static_cast<std::size_t>(i)]);
  linear_fwd(b.o, lora, i, rows, a.attn.data(), s.post_norms ? a.attn_out.data() : proj);
  if (s.post_norms) output_norm_fwd(s, b.attn_out_norm, rows, a.attn_out.data(), a.attn_out_rstd.data(), proj);
  add(x, proj, a.x_mid.data(), rows * d);
  auto norm2 = norm_params<T>(s, b.mlp_norm, rows);
  norm2.x = a.x_mid.data(), norm2.y = a.norm2.data(), norm2.mean = a.mean2.data(), norm2.rstd = a.rstd2.data();
  norm_fwd(norm2);
  for (int j = 0; j < s.mlp_in_parts(); ++j)
    linear_fwd(b.mlp_in[static_cast<std::size_t>(j)], lora, i, rows, a.norm2.data(), a.mlp_in.data() + j * rows * s.ffn);
  if (request == nullptr && !s.post_norms) return;  // the backward pass recomputes h itself
  mlp_activation_fwd(MlpActivationParams<T>{s.mlp, rows * s.ffn, a.mlp_in.data(), h, nullptr, nullptr});
  linear_fwd(b.mlp_out, lora, i, rows, static_cast<const T*>(h), s.post_norms ? a.mlp_out.data() : proj);
  if (s.post_norms) output_norm_fwd(s, b.mlp_out_norm, rows, a.mlp_out.data(), a.mlp_out_rstd.data(), proj);
  if (out != nullptr) add(a.x_mid.data(), proj, out, rows * d);
}

template <class T>
void decoder_forward(const DecoderView<T>& m, const GptLora<T>* lora, const TokenBatch& batch,
                     const AttentionRequest& attention, Keep keep, DecoderActivations<T>& act) {
  const DecoderSpec& s = m.spec;
  const std::int64_t d = s.dim, rows = batch.predicted(), layers = s.layers;
  act.batch = batch.batch;
  act.seq_len = batch.seq_len;
  act.rows = rows;
  act.positions = batch.positions();
  act.cu_seqlens = batch.cu_seqlens;
  if (!s.learned_positions) act.rope = make_rope_table<T>(s.rope, s.head_dim, batch.seq_len);
  if (s.sliding_rope) act.sliding_rope = make_rope_table<T>(*s.sliding_rope, s.head_dim, batch.seq_len);
  act.lay_out(keep, layers, rows * d,
              [&](BlockActivations<T>& b) { allocate(b, s, rows, batch.batch * s.heads * batch.seq_len); });
  embed_fwd(m, batch, act.positions, act.input(0).data());

  Activation<T> h(static_cast<std::size_t>(rows * s.ffn), T(0)), proj(static_cast<std::size_t>(rows * d), T(0));
  act.plan.assign(static_cast<std::size_t>(layers), {});
  for (std::int64_t i = 0; i < layers; ++i)
    decoder_block_fwd(m, lora, i, &attention, act, act.input(i).data(), act.block(i), h.data(), proj.data(),
                      act.input(i + 1).data());
  resize(act.final_mean, s.norm == NormKind::layer_norm ? rows : 0);
  resize(act.final_rstd, rows);
  resize(act.final_out, rows * d);
  auto norm = norm_params<T>(s, m.tensors.final_norm, rows);
  norm.x = act.input(layers).data(), norm.y = act.final_out.data();
  norm.mean = act.final_mean.data(), norm.rstd = act.final_rstd.data();
  norm_fwd(norm);
  resize(act.targets, rows);
  for (std::int64_t r = 0; r < rows; ++r) act.targets[static_cast<std::size_t>(r)] = batch.target(r);
  act.loss_tokens = batch.loss_tokens;
}

template <class T>
double gpt_loss(const GptWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                const AttentionRequest& attention) {
  return loss(decoder_view(weights), lora, batch, attention);
}

template <class T>
double llama_loss(const LlamaWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                  const AttentionRequest& attention) {
  return loss(decoder_view(weights), lora, batch, attention);
}

template <class T>
GptAttentionPlan gpt_attention_plan(const GptWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                                    const AttentionRequest& attention) {
  return forward_only(decoder_view(weights), lora, batch, attention).plan;
}

template <class T>
GptAttentionPlan llama_attention_plan(const LlamaWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                                      const AttentionRequest& attention) {
  return forward_only(decoder_view(weights), lora, batch, attention).plan;
}

#define LORAFAST_INSTANTIATE(T)                                                                                  \
  template void decoder_forward<T>(const DecoderView<T>&, const GptLora<T>*, const TokenBatch&,                 \
                                   const AttentionRequest&, Keep, DecoderActivations<T>&);                      \
  template void decoder_block_fwd<T>(const DecoderView<T>&, const GptLora<T>*, std::int64_t,                    \
                                     const AttentionRequest*, DecoderActivations<T>&, const T*,                 \
                                     BlockActivations<T>&, T*, T*, T*);                                          \
  template double gpt_loss<T>(const GptWeights<T>&, const GptLora<T>*, const TokenBatch&, const AttentionRequest&); \
  template double llama_loss<T>(const LlamaWeights<T>&, const GptLora<T>*, const TokenBatch&,                   \
                                const AttentionRequest&);                                                        \
  template GptAttentionPlan gpt_attention_plan<T>(const GptWeights<T>&, const GptLora<T>*, const TokenBatch&,    \
                                                  const AttentionRequest&);                                      \
  template GptAttentionPlan llama_attention_plan<T>(const LlamaWeights<T>&, const GptLora<T>*, const TokenBatch&, \
                                                    const AttentionRequest&);
LORAFAST_INSTANTIATE(float)
LORAFAST_INSTANTIATE(double)
#undef LORAFAST_INSTANTIATE

}  // namespace lorafast
