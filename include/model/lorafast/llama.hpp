// Llama-family models (llama, qwen2, mistral) in the Hugging Face layout
// (INTERFACE.md "Llama-family models"): pre-norm blocks with RMSNorm, grouped-query
// causal attention with rotary embeddings on q and k, a SwiGLU MLP, an LM head
// (tied to embed_tokens or lm_head.weight). LoRA adapters are GptLora<T> with the
// Llama targets (q_proj ... down_proj, gpt_lora.hpp); fine-tuning and evaluation
// share the GPT-2 path's LoRA linear layer, LM-head loss and training loop.
//
// Shape legend: V vocabulary, D hidden size, H query heads, K key/value heads
// (K divides H), E head dim, F intermediate size, N batch, T sequence length.
// Every projection is stored as [in, out] (the transpose of nn.Linear's [out, in]),
// the layout LoraLinearParams computes with.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "lorafast/gpt.hpp"
#include "lorafast/gpt_loss.hpp"

namespace lorafast {

// The Llama-family fields of a config.json already parsed (model_type one of llama,
// qwen2, mistral), validated; Error(bad_input) naming `origin` and the key for a
// missing or bad value, an unknown rope type or an option this code does not
// compute (mlp_bias true, hidden_act other than silu, ...).
GptConfig parse_llama_config(const nlohmann::json& config, ModelFamily family, const std::string& origin);

struct LlamaBlockWeights {
  Tensor input_norm;          // [D]
  Tensor q_w, q_b;            // [D, H E], [H E] (bias empty unless config.llama.qkv_bias)
  Tensor k_w, k_b;            // [D, K E], [K E]
  Tensor v_w, v_b;            // [D, K E], [K E]
  Tensor o_w, o_b;            // [H E, D], [D]   (bias empty unless config.llama.o_bias)
  Tensor post_norm;           // [D]
  Tensor gate_w, up_w;        // [D, F] each
  Tensor down_w;              // [F, D]
};

template <class T>
struct LlamaWeights {
  using value_type = T;
  GptConfig config;
  Tensor embed;    // [V, D]
  std::vector<LlamaBlockWeights> blocks;
  Tensor norm;     // [D]
  Tensor lm_head;  // [V, D]; a copy of `embed` when tied
};

// A model directory: config.json and model.safetensors, or the shards listed in
// model.safetensors.index.json ("weight_map"; a shard must be a file inside the
// directory). Every tensor must be present with its shape (checked before any is
// converted) and finite; F32, F64, F16 and BF16 load. Error(bad_input) naming the
// file and tensor.
template <class T>
LlamaWeights<T> load_llama_model(const std::filesystem::path& dir);
// The same from tensors already read; `origin` names their file(s).
template <class T>
LlamaWeights<T> llama_weights_from_tensors(const GptConfig& config, const TensorMap& tensors, const std::string& origin);

// As gpt_loss / gpt_attention_plan / gpt_loss_and_grad (gpt_loss.hpp). Attention
// runs per query head on the rotated q and k. Error(cannot_meet) when the batch is
// longer than the model's sliding window (masking is not implemented).
template <class T>
double llama_loss(const LlamaWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                  const AttentionRequest& attention = {});
template <class T>
GptAttentionPlan llama_attention_plan(const LlamaWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                                      const AttentionRequest& attention);
template <class T>
GptLossGrad<T> llama_loss_and_grad(const LlamaWeights<T>& weights, const GptLora<T>& lora, const TokenBatch& batch,
                                   const AttentionRequest& attention = {});

// The generic spellings the training loop and evaluation use, one overload per family.
template <class T>
double model_loss(const GptWeights<T>& w, const GptLora<T>* lora, const TokenBatch& b, const AttentionRequest& a = {}) {
  return gpt_loss(w, lora, b, a);
}
template <class T>
double model_loss(const LlamaWeights<T>& w, const GptLora<T>* lora, const TokenBatch& b, const AttentionRequest& a = {}) {
  return llama_loss(w, lora, b, a);
}
template <class T>
GptLossGrad<T> model_loss_and_grad(const GptWeights<T>& w, const GptLora<T>& lora, const TokenBatch& b,
                                   const AttentionRequest& a) {
  return gpt_loss_and_grad(w, lora, b, a);
}
template <class T>
GptLossGrad<T> model_loss_and_grad(const LlamaWeights<T>& w, const GptLora<T>& lora, const TokenBatch& b,
                                   const AttentionRequest& a) {
  return llama_loss_and_grad(w, lora, b, a);
}
template <class T>
GptAttentionPlan model_attention_plan(const GptWeights<T>& w, const GptLora<T>* lora, const TokenBatch& b,
                                      const AttentionRequest& a) {
  return gpt_attention_plan(w, lora, b, a);
}
template <class T>
GptAttentionPlan model_attention_plan(const LlamaWeights<T>& w, const GptLora<T>* lora, const TokenBatch& b,
                                      const AttentionRequest& a) {
  return llama_attention_plan(w, lora, b, a);
}

}  // namespace lorafast
