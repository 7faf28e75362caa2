// The language-model loss of a GPT-2 model with LoRA adapters and its gradient with
// respect to the adapters (fine-tuning: the base weights are frozen) or to every
// base weight as well (pretraining):
//   loss = mean over the N*T predicted tokens of -log softmax(logits)[next token]
// (instruction data: the rows with a target, over TokenBatch::loss_tokens).
// Attention runs per head through the method AttentionRequest asks for (exact tiled
// kernels by default, or the Taylor surrogate where certified), so no T x T matrix
// is stored; activation memory is O(N * T * D * n_layer), the LM head and
// cross-entropy are computed in row chunks (O(chunk * V) scratch). Gradients are
// deterministic for a given thread count.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "lorafast/dispatch.hpp"
#include "lorafast/gpt.hpp"
#include "lorafast/gpt_lora.hpp"

namespace lorafast {

// A token that no row predicts (PyTorch's ignore_index): no loss, no gradient.
constexpr std::int32_t no_target = -100;

// N windows of T + 1 tokens: window n feeds tokens [0, T) and predicts [1, T].
// Instruction data (packed or padded rows) adds what each row predicts, where its
// documents start and what the summed token losses are divided by.
struct TokenBatch {
  std::int64_t batch = 0;    // N
  std::int64_t seq_len = 0;  // T (the window holds T + 1 tokens)
  std::vector<std::int32_t> tokens;  // [N, T + 1]
  // [N, T] or empty: row (n, t) predicts targets[n T + t] (a token, or no_target)
  // instead of tokens (n, t + 1).
  std::vector<std::int32_t> targets;
  // Documents over the N T rows, as AttentionParams::cu_seqlens; empty: one per
  // window. Positions restart at each document's first row, and no attention crosses
  // documents.
  std::vector<std::int64_t> cu_seqlens;
  // The summed losses of the predicting rows are divided by this; 0: by their count.
  // Gradient accumulation sets the whole update's count, so the update's loss is the
  // mean over all its predicted tokens (transformers' num_items_in_batch).
  std::int64_t loss_tokens = 0;

  std::int32_t at(std::int64_t n, std::int64_t t) const { return tokens[static_cast<std::size_t>(n * (seq_len + 1) + t)]; }
  std::int32_t target(std::int64_t row) const {
    return targets.empty() ? at(row / seq_len, row % seq_len + 1) : targets[static_cast<std::size_t>(row)];
  }
  std::int64_t predicted() const { return batch * seq_len; }  // token rows
  std::int64_t targeted() const;  // rows with a target (predicted() without `targets`)
  // Each row's position in its document: t, or with documents the rows since its document's first.
  std::vector<std::int32_t> positions() const;
};

// N >= 1, 1 <= T <= n_positions, tokens.size() == N * (T + 1), every token in [0, V);
// targets empty or N * T of them, each in [0, V) or no_target; cu_seqlens empty or
// running from 0 to N T in increasing steps through every window's start;
// loss_tokens >= 0. Throws Error(bad_input) naming the first offending token.
void validate_tokens(const TokenBatch& batch, const GptConfig& config);

// How the model's attention runs is an AttentionRequest (dispatch.hpp): each layer
// plans its heads from its own q and k (plan_heads), and the backward pass runs the
// forward pass's plan, so a fast head's gradient is the exact gradient of the
// surrogate loss.

// Where the backward pass gets each block's activations: `never` keeps every
// block's from the forward pass (fastest); `always` keeps only each block's input
// (the residual stream) and reruns the block's forward pass, on the forward's
// attention plan, just before its backward (one forward pass more per step, the
// activation memory of one block, so long sequences fit); `automatic` recomputes
// when keeping every block would take more than a quarter of physical memory. The
// results are bit-identical either way.
enum class Recompute { automatic, always, never };

// Per layer, one HeadDecision per head: what each layer's attention ran.
using GptAttentionPlan = std::vector<std::vector<HeadDecision>>;

template <class T>
struct GptLossGrad {
  double loss = 0.0;              // mean cross-entropy in nats
  std::vector<LoraLayer> d_lora;  // same layout as GptLora::layers; dtype T
  GptAttentionPlan plan;          // n_layer
};

// Forward only. `lora` may be nullptr (the base model). Throws Error(cannot_meet) as
// decide() does when fast or chained cannot certify eps in some layer.
template <class T>
double gpt_loss(const GptWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                const AttentionRequest& attention = {});

// The forward pass's attention plan alone (what gpt_loss_and_grad would run).
template <class T>
GptAttentionPlan gpt_attention_plan(const GptWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                                    const AttentionRequest& attention);

// Forward and backward: the loss and d loss / d (every adapter tensor). The rows of
// an attn.c_attn lora_B gradient outside lora.config.c_attn_qkv are zero (frozen).
template <class T>
GptLossGrad<T> gpt_loss_and_grad(const GptWeights<T>& weights, const GptLora<T>& lora, const TokenBatch& batch,
                                 const AttentionRequest& attention = {}, Recompute recompute = Recompute::automatic);

template <class T>
struct GptFullGrad {
  double loss = 0.0;              // mean cross-entropy in nats
  GptWeights<T> d_weights;        // d loss / d every base tensor, same layout and dtype T;
                                  // d_weights.wte sums the embedding and the tied LM head
  std::vector<LoraLayer> d_lora;  // as GptLossGrad::d_lora when `lora` is given, else empty
};

// Forward and backward to every base weight (and to the adapters, if `lora` is not
// nullptr). The base-weight gradient is that of the model as run, i.e. with the
// adapters applied. Extra scratch over gpt_loss_and_grad: the gradient itself and
// threads * V * D values for the tied LM head. Parameter gradients are sums over
// the N*T token rows; each thread owns whole output entries, except for the LM
// head's share of d_wte (per-thread partials added in thread order).
template <class T>
GptFullGrad<T> gpt_loss_and_full_grad(const GptWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                                       Recompute recompute = Recompute::automatic);

}  // namespace lorafast
