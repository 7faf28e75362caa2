// What the decoder's forward pass keeps for the backward pass, per block, and the
// helpers decoder_forward.cpp, decoder_backward.cpp and decoder_decode.cpp share.
// M = N * T token rows. Per block (3 D + 2 Q + 2 C + F * (MLP input projections)) M
// values, the row statistics of the norms and the attention lse (GPT-2: 12 M D);
// the MLP activation's output is recomputed in the backward pass, and no T x T
// matrix exists.
#pragma once

#include <cmath>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "lorafast/attention.hpp"
#include "lorafast/gpt_loss.hpp"
#include "lorafast/planned_attention.hpp"
#include "core/scratch.hpp"
#include "model/decoder_parts.hpp"
#include "model/lm_head_loss.hpp"
#include "model/lora_linear.hpp"
#include "model/norm.hpp"
#include "model/rope.hpp"

namespace lorafast {

// What a forward pass keeps: one block's activations, reused (evaluation); every
// block's input, with one block's activations that the backward pass refills per
// block (Recompute::always); everything (Recompute::never); or, decided once the
// first block's buffers exist, everything if it fits (Recompute::automatic).
enum class Keep { last, inputs, all, all_if_fits };

Keep keep_for_backward(Recompute recompute);
// Keep::all or Keep::inputs for Keep::all_if_fits: all when `layers` blocks of
// `block_bytes` take at most a quarter of physical memory.
Keep resolve_keep(Keep keep, std::int64_t layers, std::size_t block_bytes);

// The number of values `v`'s activations hold (the sum of their sizes).
template <class... V>
std::size_t values(const V&... v) {
  return (v.size() + ...);
}

// Uninitialised on resize (every activation is written before it is read), from the
// scratch pool: the next step reuses this step's memory.
template <class T>
using Activation = ScratchVector<T>;

template <class T>
struct BlockActivations {
  Activation<T> mean1, rstd1, norm1;  // [M] (LayerNorm only, else empty), [M], [M, D]
  Activation<T> qkv;                  // q | k | v as qkv_view lays them out; with RoPE q and k rotated
  Activation<T> qk_pre, qk_rstd;      // with qk_norm: q [M, Q] then k [M, C] before their norm; [M H] then [M K]
  Activation<T> attn, lse;            // [M, Q], [N, H, T]
  Activation<T> x_mid;                // [M, D]  residual after attention
  Activation<T> mean2, rstd2, norm2;  // as mean1, rstd1, norm1
  Activation<T> mlp_in;               // the MLP's input projections, [M, F] each, one after the other
  // With post_norms: the attention's and the MLP's output projections [M, D] before
  // their norms, and the norms' rstd [M].
  Activation<T> attn_out, attn_out_rstd, mlp_out, mlp_out_rstd;

  std::size_t size() const {
    return values(mean1, rstd1, norm1, qkv, qk_pre, qk_rstd, attn, lse, x_mid, mean2, rstd2, norm2, mlp_in, attn_out,
                  attn_out_rstd, mlp_out, mlp_out_rstd);
  }
};

// Where q, k and v of M token rows sit in one buffer: fused, as the column blocks
// of each row of one projection's output [M, Q + 2C] (GPT-2's c_attn, which the
// attention reads in place); otherwise as three packed blocks q [M, Q], k [M, C],
// v [M, C], each one projection's output. part(j) is projection j's output.
template <class P>
struct QkvView {
  P* q;
  P* k;
  P* v;
  std::int64_t q_stride, kv_stride;  // row strides
  P* part(int j) const { return j == 0 ? q : j == 1 ? k : v; }
};

template <class P>
QkvView<P> qkv_view(const DecoderSpec& s, std::int64_t rows, P* base) {
  const std::int64_t q = s.q_width(), c = s.kv_width();
  if (s.fused_qkv) return {base, base + q, base + q + c, q + 2 * c, q + 2 * c};
  return {base, base + rows * q, base + rows * (q + c), q, c};
}

// Where q/k/v projection j writes: with qk_norm, q and k go to `pre` (q [M, Q]
// then k [M, C]) and their per-head norms to qkv; otherwise straight to qkv.
template <class P>
P* projection_out(const DecoderSpec& s, const QkvView<P>& qkv, P* pre, std::int64_t rows, int j) {
  if (s.qk_norm && j < 2) return j == 0 ? pre : pre + rows * s.q_width();
  return qkv.part(j);
}

// The RMSNorm of every head of q (j = 0) or k (j = 1) of `rows` token rows: rows
// H (or K) rows of E; the caller sets the tensors.
template <class T>
NormParams<T> head_norm_params(const DecoderSpec& s, const NormTensors<const Tensor>& n, std::int64_t rows, int j) {
  NormParams<T> p;
  p.kind = s.norm;
  p.rows = rows * (j == 0 ? s.heads : s.kv_heads);
  p.dim = s.head_dim;
  p.eps = s.eps;
  p.weight = data<T>(n.weight);
  return p;
}

// A causal self-attention over N windows of T tokens, H query heads reading K
// key/value heads, scale 1/sqrt(E) (GPT-2's, and transformers' head_dim**-0.5);
// the caller sets the tensors (packed layouts unless it sets strides).
template <class T>
AttentionParams<T> causal_attention_params(std::int64_t batch, std::int64_t seq_len, std::int64_t heads,
                                           std::int64_t kv_heads, std::int64_t head_dim) {
  AttentionParams<T> attn;
  attn.batch = batch;
  attn.seq_len = seq_len;
  attn.heads = heads;
  attn.kv_heads = kv_heads;
  attn.head_dim = head_dim;
  attn.scale = AttentionConfig{}.resolved_scale(head_dim);
  attn.causal = true;
  return attn;
}

// Block `layer`'s attention, with its sliding window: with fused q/k/v it reads them
// in place, as column blocks of the projection's output, and writes their gradients
// to the same columns.
template <class T>
AttentionParams<T> block_attention_params(const DecoderSpec& s, std::int64_t layer, std::int64_t batch,
                                          std::int64_t seq_len) {
  AttentionParams<T> attn = causal_attention_params<T>(batch, seq_len, s.heads, s.kv_heads, s.head_dim);
  attn.bf16_products = s.bf16;
  attn.window = s.window(layer);
  if (s.attn_scale > 0) attn.scale = s.attn_scale;
  if (s.fused_qkv) {
    const std::int64_t width = s.q_width() + 2 * s.kv_width();
    attn.q_strides = attn.k_strides = attn.v_strides = attn.d_q_strides = attn.d_k_strides = attn.d_v_strides =
        HeadStrides{seq_len * width, width, s.head_dim};
  }
  return attn;
}

// The residual stream and the block activations a forward pass keeps (Keep); the
// decoder's activations are these plus the final norm's.
template <class T, class Block>
struct KeptBlocks {
  Keep keep = Keep::all;  // resolved: last, inputs or all
  // With Keep::inputs or Keep::all, residual[i] is block i's input and
  // residual[n_layer] the final norm's, each [M, D]; Keep::last alternates two.
  std::vector<Activation<T>> residual;
  std::vector<Block> blocks;  // one per block with Keep::all, else one

  // Sizes both for `layers` blocks under `requested`: `allocate(block)` sizes one
  // block, and Keep::all_if_fits is decided on the first block's size.
  template <class Allocate>
  void lay_out(Keep requested, std::int64_t layers, std::int64_t residual_size, Allocate allocate) {
    blocks.resize(1);
    allocate(blocks[0]);
    keep = resolve_keep(requested, layers, blocks[0].size() * sizeof(T));
    blocks.resize(static_cast<std::size_t>(keep == Keep::all ? layers : 1));
    for (auto& b : blocks) allocate(b);
    residual.resize(static_cast<std::size_t>(keep == Keep::last ? 2 : layers + 1));
    for (auto& r : residual) r.resize(static_cast<std::size_t>(residual_size));
  }
  // Block i's input (input(n_layer): the final norm's) and activations.
  Activation<T>& input(std::int64_t i) { return residual[static_cast<std::size_t>(keep == Keep::last ? i % 2 : i)]; }
  Block& block(std::int64_t i) { return blocks[static_cast<std::size_t>(keep == Keep::all ? i : 0)]; }
};

// The RoPE table of block `layer`: `sliding` for a sliding layer when the spec gives
// those their own RoPE (Gemma 3's local layers), else `rope`.
template <class Table>
const Table& layer_rope(const DecoderSpec& s, std::int64_t layer, const Table& rope, const Table& sliding) {
  return s.sliding_rope && s.sliding(layer) ? sliding : rope;
}

template <class T>
struct DecoderActivations : KeptBlocks<T, BlockActivations<T>> {
  std::int64_t batch = 0, seq_len = 0, rows = 0;  // N, T, M
  std::vector<std::int32_t> positions;            // [M] with documents (TokenBatch::positions), else empty
  std::vector<std::int64_t> cu_seqlens;           // the batch's documents (empty: one per window)
  GptAttentionPlan plan;                          // every layer's, rerun by the backward pass
  RopeTable<T> rope, sliding_rope;                // with RoPE: positions 0 .. T-1 (sliding_rope: of spec.sliding_rope)
  Activation<T> final_mean, final_rstd, final_out;  // [M] (LayerNorm only), [M], [M, D]
  std::vector<std::int32_t> targets;              // [M], a token or no_target
  std::int64_t loss_tokens = 0;                   // TokenBatch::loss_tokens

  // Block `layer`'s RoPE over every row of x, `heads` heads per row, at the rows' positions.
  RopeParams<T> rope_params(const DecoderSpec& s, std::int64_t layer, std::int64_t heads, T* x) const {
    const std::int32_t* at = positions.empty() ? nullptr : positions.data();
    return {rows, heads, &layer_rope(s, layer, rope, sliding_rope), x, at};
  }
  // Block `layer`'s attention over this batch, with its documents.
  AttentionParams<T> attention_params(const DecoderSpec& s, std::int64_t layer) const {
    AttentionParams<T> attn = block_attention_params<T>(s, layer, batch, seq_len);
    attn.cu_seqlens = cu_seqlens;
    return attn;
  }
};

// Gemma's embedding scale sqrt(D), rounded to T as transformers rounds it to the
// weights' dtype (Gemma3TextScaledWordEmbedding); x [D] *= it.
template <class T>
void scale_embedding(const DecoderSpec& s, T* x) {
  const T scale = static_cast<T>(std::sqrt(static_cast<double>(s.dim)));
  for (std::int64_t c = 0; c < s.dim; ++c) x[c] *= scale;
}

// out = a + b, elementwise (the residual connections).
template <class T>
void add(const T* a, const T* b, T* out, std::int64_t count) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < count; ++i) out[i] = a[i] + b[i];
}

// A block's attention forward: with `request` its heads are planned into `plan`
// first (an error names the layer; decide() names the head), without it `plan`, the
// forward's, is rerun (the backward pass's recomputation).
template <class T>
void block_attention_fwd(const AttentionParams<T>& attn, const AttentionRequest* request, std::int64_t layer,
                         std::vector<HeadDecision>& plan) {
  if (request != nullptr) {
    try {
      plan = plan_heads(attn, *request);
    } catch (const Error& e) {
      throw Error(e.kind(), cat("layer ", layer, ", ", e.what()));
    }
  }
  planned_attention_fwd(attn, plan);
}

// Sets p's adapter to the one `lora` has for `target` in block `layer`, if any.
template <class T>
void attach_adapter(LoraLinearParams<T>& p, const GptLora<T>* lora, std::int64_t layer, LoraTarget target) {
  if (lora == nullptr || !lora->at(layer, target)) return;
  const auto& adapter = *lora->at(layer, target);
  p.rank = adapter.rank();
  p.scale = static_cast<T>(lora->config.scaling());
  p.lora_a = adapter.a.template data<T>();
  p.lora_b = adapter.b.template data<T>();
}

// Zeroed gradients laid out as the adapters of `lora`.
template <class T>
std::vector<LoraLayer> zero_grads(const GptLora<T>& lora) {
  std::vector<LoraLayer> grads(lora.layers.size());
  for (std::size_t i = 0; i < grads.size(); ++i)
    for (std::size_t t = 0; t < lora_target_count; ++t)
      if (const auto& a = lora.layers[i][t])
        grads[i][t] = LoraAdapter{Tensor(dtype_of<T>(), a->a.shape()), Tensor(dtype_of<T>(), a->b.shape())};
  return grads;
}

// The projection `l` of block `layer` over `rows` token rows, with its adapter when
// `lora` adapts it; the caller sets the inputs and outputs.
template <class T>
LoraLinearParams<T> linear_params(const LinearTensors<const Tensor>& l, const GptLora<T>* lora, std::int64_t layer,
                                  std::int64_t rows) {
  LoraLinearParams<T> p;
  p.rows = rows;
  p.in = l.w->dim(0);
  p.out = l.w->dim(1);
  const FrozenValues<T> w = frozen<T>(*l.w);
  p.w = w.values;
  p.w_bf16 = w.bf16;
  p.bias = data<T>(l.bias);
  attach_adapter(p, lora, layer, l.target);
  return p;
}

// y = the projection `l` of x (rows token rows).
template <class T>
void linear_fwd(const LinearTensors<const Tensor>& l, const GptLora<T>* lora, std::int64_t layer, std::int64_t rows,
                const T* x, T* y) {
  auto p = linear_params(l, lora, layer, rows);
  p.x = x;
  p.y = y;
  lora_linear_fwd(p);
}

// The norm part over `rows` rows of D with norm tensors `n`.
template <class T>
NormParams<T> norm_params(const DecoderSpec& s, const NormTensors<const Tensor>& n, std::int64_t rows) {
  NormParams<T> p;
  p.kind = s.norm;
  p.rows = rows;
  p.dim = s.dim;
  p.eps = s.eps;
  p.weight = data<T>(n.weight);
  p.bias = data<T>(n.bias);
  return p;
}

// The LM head's loss over the final norm's output rows that have a target (the
// others skip the head), their summed losses divided by act.loss_tokens (0: by
// their count). With d_h [M, D], its gradient (zero on rows without a target); with
// d_wte too, the head's weight gradient, overwritten.
template <class T>
double decoder_head_loss(const DecoderView<T>& model, const DecoderActivations<T>& act, T* d_h, T* d_wte);

// What one backward pass writes: adapter gradients, base-weight gradients (laid out
// as the weights, bound as parts), or both, and optionally the attention plan it ran.
struct GradOutputs {
  std::vector<LoraLayer>* d_lora = nullptr;         // laid out as the adapters (zeroed)
  DecoderTensors<Tensor>* d_weights = nullptr;      // laid out as the weights (zeroed)
  GptAttentionPlan* plan = nullptr;
};

// The forward pass up to the final norm (the loss is lm_head_loss on final_out),
// keeping what `keep` says (act.keep is the resolved choice). Each block's
// attention runs the plan `attention` gives for its q and k (act.plan).
template <class T>
void decoder_forward(const DecoderView<T>& model, const GptLora<T>* lora, const TokenBatch& batch,
                     const AttentionRequest& attention, Keep keep, DecoderActivations<T>& act);

// Block `layer` from its input x: its activations into `a`, the output into `out`.
// With `request` it plans its attention into act.plan[layer]; without, it reruns
// that plan and stops before the MLP activation (`h` and `out` unused; with
// post_norms it goes on to the MLP's output norm, for a.mlp_out, and `out` may be
// nullptr): what the backward pass recomputes. h [M, F] and proj [M, D] are scratch.
template <class T>
void decoder_block_fwd(const DecoderView<T>& model, const GptLora<T>* lora, std::int64_t layer,
                       const AttentionRequest* request, DecoderActivations<T>& act, const T* x, BlockActivations<T>& a,
                       T* h, T* proj, T* out);

}  // namespace lorafast
