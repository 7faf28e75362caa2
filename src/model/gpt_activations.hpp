// What the GPT forward pass keeps for the backward pass, per block, and the shared
// helpers of gpt_forward.cpp / gpt_backward.cpp. M = N * T token rows.
// Per block: 12 * M * D values (+ 3 M row statistics and the attention lse);
// the GELU output is recomputed in the backward pass, and no T x T matrix exists.
#pragma once

#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "lorafast/attention.hpp"
#include "lorafast/gpt_loss.hpp"
#include "lorafast/planned_attention.hpp"
#include "core/scratch.hpp"
#include "model/lora_linear.hpp"

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
  Activation<T> ln1_mean, ln1_rstd, ln1_out;  // [M], [M], [M, D]
  Activation<T> qkv;                          // [M, 3D] c_attn output: q | k | v columns, heads by columns
  Activation<T> attn, lse;                    // [M, D], [N, H, T]
  Activation<T> x_mid;                        // [M, D]  residual after attention
  Activation<T> ln2_mean, ln2_rstd, ln2_out;  // [M], [M], [M, D]
  Activation<T> fc_pre;                       // [M, 4D] c_fc output, before GELU

  std::size_t size() const {
    return values(ln1_mean, ln1_rstd, ln1_out, qkv, attn, lse, x_mid, ln2_mean, ln2_rstd, ln2_out, fc_pre);
  }
};

// A decoder block's causal self-attention over N windows of T tokens: the model's
// query heads and head dim, scale 1/sqrt(E) (GPT-2's, and transformers'
// head_dim**-0.5 for the Llama family); the caller sets layouts and tensors.
template <class T>
AttentionParams<T> causal_attention_params(const GptConfig& cfg, std::int64_t batch, std::int64_t seq_len) {
  AttentionParams<T> attn;
  attn.batch = batch;
  attn.seq_len = seq_len;
  attn.heads = cfg.n_head;
  attn.head_dim = cfg.head_dim();
  attn.scale = AttentionConfig{}.resolved_scale(attn.head_dim);
  attn.causal = true;
  return attn;
}

// The attention of a block reads q, k and v in place, as column blocks of the
// c_attn output [M, 3D]; its gradients go to the same columns of d_qkv.
template <class T>
AttentionParams<T> gpt_attention_params(const GptConfig& cfg, std::int64_t batch, std::int64_t seq_len) {
  AttentionParams<T> attn = causal_attention_params<T>(cfg, batch, seq_len);
  const std::int64_t width = 3 * cfg.n_embd;
  attn.q_strides = attn.k_strides = attn.v_strides = attn.d_q_strides = attn.d_k_strides = attn.d_v_strides =
      HeadStrides{seq_len * width, width, attn.head_dim};
  return attn;
}

// The residual stream and the block activations a forward pass keeps (Keep); the
// GPT-2 and Llama activations are these plus their own final-norm state.
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

template <class T>
struct GptActivations : KeptBlocks<T, BlockActivations<T>> {
  std::int64_t batch = 0, seq_len = 0, rows = 0;  // N, T, M
  GptAttentionPlan plan;                      // every layer's, rerun by the backward pass
  Activation<T> lnf_mean, lnf_rstd, lnf_out;  // [M], [M], [M, D]
  std::vector<std::int32_t> targets;           // [M]
};

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

// What one backward pass writes: adapter gradients, base-weight gradients (W: the
// family's weights, GptWeights<T> or LlamaWeights<T>), or both, and optionally the
// attention plan it ran.
template <class W>
struct GradOutputs {
  std::vector<LoraLayer>* d_lora = nullptr;  // laid out as the adapters (zeroed)
  W* d_weights = nullptr;                    // laid out as the weights (zeroed)
  GptAttentionPlan* plan = nullptr;
};

// The forward pass up to ln_f (the loss is lm_head_loss on lnf_out), keeping what
// `keep` says (act.keep is the resolved choice). Each block's attention runs the
// plan `attention` gives for its q and k (act.plan).
template <class T>
void gpt_forward(const GptWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                 const AttentionRequest& attention, Keep keep, GptActivations<T>& act);

// Block `layer` from its input x: its activations into `a`, the output into `out`.
// With `request` it plans its attention into act.plan[layer]; without, it reruns
// that plan and stops before GELU (`wide` and `out` unused): what the backward
// pass recomputes. wide [M, 4D] and proj [M, D] are scratch.
template <class T>
void gpt_block_fwd(const GptWeights<T>& weights, const GptLora<T>* lora, std::int64_t layer,
                   const AttentionRequest* request, GptActivations<T>& act, const T* x, BlockActivations<T>& a,
                   T* wide, T* proj, T* out);

// The Conv1D of `target` in block `layer`, with its adapter when `lora` adapts it.
template <class T>
LoraLinearParams<T> module_params(const GptWeights<T>& weights, const GptLora<T>* lora, std::int64_t layer,
                                  LoraTarget target, std::int64_t rows);

}  // namespace lorafast
