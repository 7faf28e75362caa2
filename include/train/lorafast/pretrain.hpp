// Pretraining a GPT-2 or Llama-family model: every base weight trained with AdamW
// (train_optimizer.hpp) on seeded random windows of byte tokens, by the update loop
// of fine-tuning (train_loop.hpp: the same TrainOptions, StepReport and callbacks,
// and the same determinism: identical options, data and thread count give
// bit-identical weights). Weight decay applies to the rank-2 tensors only (the
// embeddings and Conv1D weights, not biases or LayerNorm parameters), as in GPT-2
// and nanoGPT (the Llama family: embeddings, projections, the untied LM head; not
// RMSNorm weights or biases). TrainOptions::method and adamw.lora_plus_ratio do not
// apply. With TrainOptions::bf16 (f32 weights) the passes of each update multiply by
// a bf16 copy of the weights (store_frozen_bf16) while the f32 master weights take
// the update.
#pragma once

#include <cstdint>

#include "lorafast/llama.hpp"
#include "lorafast/train_loop.hpp"

namespace lorafast {

// GPT-2's initialisation (Hugging Face GPT2PreTrainedModel._init_weights): wte, wpe
// and every Conv1D weight ~ N(0, 0.02^2), except the residual output projections
// attn.c_proj and mlp.c_proj ~ N(0, (0.02 / sqrt(2 n_layer))^2); biases 0;
// LayerNorm weight 1, bias 0. Normal deviates come from Box-Muller on one
// SplitMix64Rng(seed) stream, tensor by tensor in gpt_named_tensors order, so a
// seed gives the same weights on every platform (up to libm's last-bit rounding).
template <class T>
GptWeights<T> init_gpt_weights(const GptConfig& config, std::uint64_t seed);

// The Llama family's initialisation (transformers' PreTrainedModel._init_weights for
// LlamaForCausalLM and its Qwen2 / Mistral twins): embed_tokens, every projection
// weight and an untied lm_head ~ N(0, initializer_range^2); biases 0; RMSNorm
// weights 1. The same seeded stream as init_gpt_weights, tensor by tensor in
// llama_named_tensors order (values in the [in, out] layout, row by row).
template <class T>
LlamaWeights<T> init_llama_weights(const GptConfig& config, std::uint64_t seed);

// Weights (GptWeights<T> or LlamaWeights<T>) with their AdamW moments.
template <class Weights>
struct PretrainStateOf {
  Weights weights;
  Weights m, v;           // AdamW moments, the layout of `weights`
  std::int64_t step = 0;  // updates completed
};
template <class T>
using PretrainState = PretrainStateOf<GptWeights<T>>;
template <class T>
using LlamaPretrainState = PretrainStateOf<LlamaWeights<T>>;

// init_gpt_weights(config, seed) and zero moments.
template <class T>
PretrainState<T> init_pretrain_state(const GptConfig& config, std::uint64_t seed);
// `weights` (e.g. init_llama_weights, or a model loaded to train further) and zero moments.
template <class Weights>
PretrainStateOf<Weights> pretrain_state_from(Weights weights);

// One adamw_update of every base tensor (t = ++state.step), decaying the rank-2 ones.
template <class Weights>
void pretrain_adamw_step(PretrainStateOf<Weights>& state, const Weights& grads, const AdamWOptions& options,
                         double lr);

// Runs updates state.step + 1 .. options.steps. Errors: validate_training_run()'s;
// Error(cannot_meet) if the loss diverges.
template <class Weights>
TrainOutcome pretrain(PretrainStateOf<Weights>& state, const TrainValSplit& data, const TrainOptions& options,
                      const TrainCallbacks& callbacks = {});

}  // namespace lorafast
