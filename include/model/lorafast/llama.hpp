// Llama-family models (llama, qwen2, mistral, qwen3, gemma3_text) in the Hugging Face layout
// (INTERFACE.md "Llama-family models"): pre-norm blocks with RMSNorm, grouped-query
// causal attention with rotary embeddings on q and k (qwen3: after a per-head
// RMSNorm of each), a SwiGLU MLP, an LM head (gemma3: the parts decoder_spec lists)
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
// qwen2, mistral, qwen3, gemma3_text), validated; Error(bad_input) naming `origin` and the key for a
// missing or bad value, an unknown rope type or an option this code does not
// compute (mlp_bias true, hidden_act other than silu, ...).
GptConfig parse_llama_config(const nlohmann::json& config, ModelFamily family, const std::string& origin);

struct LlamaBlockWeights {
  Tensor input_norm;          // [D]
  Tensor q_w, q_b;            // [D, H E], [H E] (bias empty unless config.llama.qkv_bias)
  Tensor k_w, k_b;            // [D, K E], [K E]
  Tensor v_w, v_b;            // [D, K E], [K E]
  Tensor o_w, o_b;            // [H E, D], [D]   (bias empty unless config.llama.o_bias)
  Tensor q_norm, k_norm;      // [E] each (empty unless config.llama.qk_norm)
  Tensor post_norm;           // [D] the MLP's input norm (gemma3: pre_feedforward_layernorm)
  Tensor gate_w, up_w;        // [D, F] each
  Tensor down_w;              // [F, D]
  Tensor attn_out_norm, mlp_out_norm;  // [D] each, gemma3 only: post_attention_layernorm, post_feedforward_layernorm
};

template <class T>
struct LlamaWeights {
  using value_type = T;
  GptConfig config;
  Tensor embed;    // [V, D]
  std::vector<LlamaBlockWeights> blocks;
  Tensor norm;     // [D]
  Tensor lm_head;  // [V, D]; empty when tied (the head is `embed`, not a copy)

  const Tensor& head() const { return config.llama.tie_word_embeddings ? embed : lm_head; }  // [V, D]
};

// Every tensor of a LlamaWeights (of weights, or of a gradient or optimizer state of
// the same layout) with its Hugging Face name, in a fixed order (two LlamaWeights of
// one config list matching tensors at matching indices): model.embed_tokens.weight,
// per layer input_layernorm,
// self_attn.{q,k,v}_proj.weight (+ .bias with qkv_bias), o_proj.weight (+ .bias with
// o_bias), self_attn.{q,k}_norm.weight with qk_norm, post_attention_layernorm, mlp.{gate,up,down}_proj.weight
// (gemma3: post_attention_layernorm is attn_out_norm; pre_feedforward_layernorm, the
// MLP's, and post_feedforward_layernorm follow), then
// model.norm.weight and lm_head.weight unless tied. `transposed`: a projection,
// kept [in, out], stored by transformers as nn.Linear's [out, in].
template <class Tensor_>
struct LlamaNamedTensor {
  std::string name;
  Tensor_* tensor;
  bool transposed;
};
template <class T>
std::vector<LlamaNamedTensor<Tensor>> llama_named_tensors(LlamaWeights<T>& weights);
template <class T>
std::vector<LlamaNamedTensor<const Tensor>> llama_named_tensors(const LlamaWeights<T>& weights);

// All-zero weights of the shapes `config` (Llama family, validated) implies.
template <class T>
LlamaWeights<T> zero_llama_weights(const GptConfig& config);

// The tensors under their Hugging Face names and in its layout ([out, in]
// projections), dtype T: what model.safetensors holds.
template <class T>
TensorMap llama_hf_tensors(const LlamaWeights<T>& weights);

// config.json text as transformers 5's LlamaConfig / Qwen2Config / MistralConfig
// save_pretrained writes it for these sizes (its keys and defaults, bos/eos/pad
// token ids at the class defaults, rope_parameters), with "architectures" and "dtype"
// as a saved model has them; `dtype` is "float32" or "float64".
std::string llama_config_json(const GptConfig& config, const std::string& dtype);

// Writes a model directory that load_llama_model and transformers'
// AutoModelForCausalLM.from_pretrained read: `dir` is created if missing, then
// model.safetensors (llama_hf_tensors, metadata {"format": "pt"}) and config.json,
// each atomically. Errors: Error(bad_input) naming the path.
template <class T>
void save_llama_model(const std::filesystem::path& dir, const LlamaWeights<T>& weights);

// A model directory: config.json and model.safetensors, or the shards listed in
// model.safetensors.index.json ("weight_map"; a shard must be a file inside the
// directory). Every tensor must be present with its shape (checked before any is
// converted) and finite; F32, F64, F16 and BF16 load. Error(bad_input) naming the
// file and tensor. Tensors are read one at a time (memory: the model plus one
// tensor). `frozen_bf16` (T = float): the frozen matrices are stored in bf16 as
// store_frozen_bf16 (decoder.hpp) leaves them, without an f32 copy on the way.
template <class T>
LlamaWeights<T> load_llama_model(const std::filesystem::path& dir, bool frozen_bf16 = false);
// The same from tensors already read; `origin` names their file(s).
template <class T>
LlamaWeights<T> llama_weights_from_tensors(const GptConfig& config, const TensorMap& tensors, const std::string& origin);

// As gpt_loss / gpt_attention_plan / gpt_loss_and_grad (gpt_loss.hpp). Attention
// runs per query head on the rotated q and k, under the sliding window of each layer
// that has one.
template <class T>
double llama_loss(const LlamaWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                  const AttentionRequest& attention = {});
template <class T>
GptAttentionPlan llama_attention_plan(const LlamaWeights<T>& weights, const GptLora<T>* lora, const TokenBatch& batch,
                                      const AttentionRequest& attention);
template <class T>
GptLossGrad<T> llama_loss_and_grad(const LlamaWeights<T>& weights, const GptLora<T>& lora, const TokenBatch& batch,
                                   const AttentionRequest& attention = {}, Recompute recompute = Recompute::automatic);

template <class T>
struct LlamaFullGrad {
  double loss = 0.0;              // mean cross-entropy in nats
  LlamaWeights<T> d_weights;      // d loss / d every base tensor, same layout and dtype T;
                                  // when tied, d_weights.embed sums the embedding and the LM head
  std::vector<LoraLayer> d_lora;  // as GptLossGrad::d_lora when `lora` is given, else empty
};

// As gpt_loss_and_full_grad (gpt_loss.hpp): forward and backward to every base
// weight (and to the adapters, if `lora` is not nullptr), exact attention.
template <class T>
LlamaFullGrad<T> llama_loss_and_full_grad(const LlamaWeights<T>& weights, const GptLora<T>* lora,
                                          const TokenBatch& batch, Recompute recompute = Recompute::automatic);

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
                                   const AttentionRequest& a, Recompute r) {
  return gpt_loss_and_grad(w, lora, b, a, r);
}
template <class T>
GptLossGrad<T> model_loss_and_grad(const LlamaWeights<T>& w, const GptLora<T>& lora, const TokenBatch& b,
                                   const AttentionRequest& a, Recompute r) {
  return llama_loss_and_grad(w, lora, b, a, r);
}
template <class T>
GptFullGrad<T> model_loss_and_full_grad(const GptWeights<T>& w, const GptLora<T>* lora, const TokenBatch& b,
                                        Recompute r) {
  return gpt_loss_and_full_grad(w, lora, b, r);
}
template <class T>
LlamaFullGrad<T> model_loss_and_full_grad(const LlamaWeights<T>& w, const GptLora<T>* lora, const TokenBatch& b,
                                          Recompute r) {
  return llama_loss_and_full_grad(w, lora, b, r);
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
