// GPT-2 forward pass with LoRA (pre-LN blocks, causal multi-head attention planned
// per layer and head, tied LM head) and the forward-only loss.
#include <algorithm>

#include "lorafast/planned_attention.hpp"
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

template <class Vector>
void resize(Vector& v, std::int64_t n) {
  v.resize(static_cast<std::size_t>(n));
}

// x0[n, t] = wte[token] + wpe[t].
template <class T>
void embed(const GptWeights<T>& w, const TokenBatch& batch, T* x) {
  const std::int64_t d = w.config.n_embd, tlen = batch.seq_len;
#pragma omp parallel for schedule(static)
  for (std::int64_t row = 0; row < batch.batch * tlen; ++row) {
    const std::int64_t n = row / tlen, t = row % tlen;
    const T* tok = ptr<T>(w.wte) + static_cast<std::int64_t>(batch.at(n, t)) * d;
    const T* pos = ptr<T>(w.wpe) + t * d;
    for (std::int64_t c = 0; c < d; ++c) x[row * d + c] = tok[c] + pos[c];
  }
}

template <class T>
void allocate(BlockActivations<T>& a, std::int64_t rows, std::int64_t d, std::int64_t lse_size) {
  for (auto* v : {&a.ln1_mean, &a.ln1_rstd, &a.ln2_mean, &a.ln2_rstd}) resize(*v, rows);
  for (auto* v : {&a.ln1_out, &a.attn, &a.x_mid, &a.ln2_out}) resize(*v, rows * d);
  resize(a.qkv, rows * 3 * d);
  resize(a.lse, lse_size);
  resize(a.fc_pre, rows * 4 * d);
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
}

template <class T>
LoraLinearParams<T> module_params(const GptWeights<T>& weights, const GptLora<T>* lora, std::int64_t layer,
                                  LoraTarget target, std::int64_t rows) {
  const auto& b = weights.blocks[static_cast<std::size_t>(layer)];
  const auto dims = lora_target_dims(target, weights.config);
  LoraLinearParams<T> p;
  p.rows = rows;
  p.in = dims.in;
  p.out = dims.out;
  switch (target) {
    case LoraTarget::attn_c_attn: p.w = ptr<T>(b.attn_c_attn_weight), p.bias = ptr<T>(b.attn_c_attn_bias); break;
    case LoraTarget::attn_c_proj: p.w = ptr<T>(b.attn_c_proj_weight), p.bias = ptr<T>(b.attn_c_proj_bias); break;
    case LoraTarget::mlp_c_fc: p.w = ptr<T>(b.mlp_c_fc_weight), p.bias = ptr<T>(b.mlp_c_fc_bias); break;
    case LoraTarget::mlp_c_proj: p.w = ptr<T>(b.mlp_c_proj_weight), p.bias = ptr<T>(b.mlp_c_proj_bias); break;
    default: LF_ASSERT(!"a GPT-2 block has only GPT-2 modules");
  }
  attach_adapter(p, lora, layer, target);
  return p;
}


template <class T>
void gpt_block_fwd(const GptWeights<T>& w, const GptLora<T>* lora, std::int64_t i, const AttentionRequest* request,
                   GptActivations<T>& act, const T* x, BlockActivations<T>& a, T* wide, T* proj, T* out) {
  const GptConfig& cfg = w.config;
  const std::int64_t d = cfg.n_embd, rows = act.rows;
  const auto& b = w.blocks[static_cast<std::size_t>(i)];
  layer_norm_fwd(LayerNormParams<T>{rows, d, cfg.layer_norm_epsilon, x, ptr<T>(b.ln_1_weight), ptr<T>(b.ln_1_bias),
                                    a.ln1_out.data(), a.ln1_mean.data(), a.ln1_rstd.data(), nullptr, nullptr});
  auto c_attn = module_params(w, lora, i, LoraTarget::attn_c_attn, rows);
  c_attn.x = a.ln1_out.data();
  c_attn.y = a.qkv.data();
  lora_linear_fwd(c_attn);
  AttentionParams<T> attn = gpt_attention_params<T>(cfg, act.batch, act.seq_len);
  attn.q = a.qkv.data();
  attn.k = a.qkv.data() + d;
  attn.v = a.qkv.data() + 2 * d;
  attn.o = a.attn.data();
  attn.lse = a.lse.data();
  block_attention_fwd(attn, request, i, act.plan[static_cast<std::size_t>(i)]);
  auto c_proj = module_params(w, lora, i, LoraTarget::attn_c_proj, rows);
  c_proj.x = a.attn.data();
  c_proj.y = proj;
  lora_linear_fwd(c_proj);
  add(x, proj, a.x_mid.data(), rows * d);
  layer_norm_fwd(LayerNormParams<T>{rows, d, cfg.layer_norm_epsilon, a.x_mid.data(), ptr<T>(b.ln_2_weight),
                                    ptr<T>(b.ln_2_bias), a.ln2_out.data(), a.ln2_mean.data(), a.ln2_rstd.data(),
                                    nullptr, nullptr});
  auto c_fc = module_params(w, lora, i, LoraTarget::mlp_c_fc, rows);
  c_fc.x = a.ln2_out.data();
  c_fc.y = a.fc_pre.data();
  lora_linear_fwd(c_fc);
  if (request == nullptr) return;
  gelu_fwd(GeluParams<T>{rows * 4 * d, a.fc_pre.data(), wide, nullptr, nullptr});
  auto mlp_proj = module_params(w, lora, i, LoraTarget::mlp_c_proj, rows);
  mlp_proj.x = wide;
  mlp_proj.y = proj;
  lora_linear_fwd(mlp_proj);
  add(a.x_mid.data(), proj, out, rows * d);
}

template <class T>
void gpt_forward(const GptWeights<T>& w, const GptLora<T>* lora, const TokenBatch& batch,
                 const AttentionRequest& attention, Keep keep, GptActivations<T>& act) {
  const GptConfig& cfg = w.config;
  const std::int64_t d = cfg.n_embd, rows = batch.predicted(), layers = cfg.n_layer;
  const std::int64_t lse_size = batch.batch * cfg.n_head * batch.seq_len;
  act.batch = batch.batch;
  act.seq_len = batch.seq_len;
  act.rows = rows;
  act.lay_out(keep, layers, rows * d, [&](BlockActivations<T>& b) { allocate(b, rows, d, lse_size); });
  embed(w, batch, act.input(0).data());

  Activation<T> wide(static_cast<std::size_t>(rows * 4 * d), T(0)), proj(static_cast<std::size_t>(rows * d), T(0));
  act.plan.assign(static_cast<std::size_t>(layers), {});
  for (std::int64_t i = 0; i < layers; ++i)
    gpt_block_fwd(w, lora, i, &attention, act, act.input(i).data(), act.block(i), wide.data(), proj.data(),
                  act.input(i + 1).data());
  resize(act.lnf_mean, rows);
  resize(act.lnf_rstd, rows);
  resize(act.lnf_out, rows * d);
  layer_norm_fwd(LayerNormParams<T>{rows, d, cfg.layer_norm_epsilon, act.input(layers).data(), ptr<T>(w.ln_f_weight),
                                    ptr<T>(w.ln_f_bias), act.lnf_out.data(), act.lnf_mean.data(),
                                    act.lnf_rstd.data(), nullptr, nullptr});
  resize(act.targets, rows);
  for (std::int64_t n = 0; n < batch.batch; ++n)
    for (std::int64_t t = 0; t < batch.seq_len; ++t) act.targets[static_cast<std::size_t>(n * batch.seq_len + t)] = batch.at(n, t + 1);
}

namespace {

template <class T>
GptActivations<T> forward_only(const GptWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                               const AttentionRequest& attention) {
  validate_tokens(batch, weights.config);
  if (lora != nullptr) validate_gpt_lora(*lora, weights.config, "adapter");
  GptActivations<T> act;
  gpt_forward(weights, lora, batch, attention, Keep::last, act);
  return act;
}

}  // namespace

template <class T>
double gpt_loss(const GptWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                const AttentionRequest& attention) {
  const auto act = forward_only(weights, lora, batch, attention);
  return lm_head_loss(LmHeadLossParams<T>{act.rows, weights.config.n_embd, weights.config.vocab_size,
                                          act.lnf_out.data(), ptr<T>(weights.wte), act.targets.data(), nullptr});
}

template <class T>
GptAttentionPlan gpt_attention_plan(const GptWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                                    const AttentionRequest& attention) {
  return forward_only(weights, lora, batch, attention).plan;
}

#define LORAFAST_INSTANTIATE(T)                                                                              \
  template void gpt_forward<T>(const GptWeights<T>&, const GptLora<T>*, const TokenBatch&, const AttentionRequest&, \
                               Keep, GptActivations<T>&);                                                    \
  template void gpt_block_fwd<T>(const GptWeights<T>&, const GptLora<T>*, std::int64_t, const AttentionRequest*, \
                                 GptActivations<T>&, const T*, BlockActivations<T>&, T*, T*, T*);            \
  template LoraLinearParams<T> module_params<T>(const GptWeights<T>&, const GptLora<T>*, std::int64_t,       \
                                                LoraTarget, std::int64_t);                                   \
  template double gpt_loss<T>(const GptWeights<T>&, const GptLora<T>*, const TokenBatch&, const AttentionRequest&); \
  template GptAttentionPlan gpt_attention_plan<T>(const GptWeights<T>&, const GptLora<T>*, const TokenBatch&,    \
                                                  const AttentionRequest&);
LORAFAST_INSTANTIATE(float)
LORAFAST_INSTANTIATE(double)
#undef LORAFAST_INSTANTIATE

}  // namespace lorafast
