// Optimisation: AdamW with decoupled weight decay and bias correction (Loshchilov &
// Hutter; PyTorch's torch.optim.AdamW), global-norm gradient clipping
// (torch.nn.utils.clip_grad_norm_), gradient accumulation, and a linear-warmup +
// cosine learning-rate schedule that decays to a floor.
//
// The core works on any list of (parameter, gradient, moments) tensors
// (adamw_update, the Tensor* list helpers); pretraining passes every base weight
// (pretrain.hpp). The LoRA forms below take std::vector<LoraLayer> lists in the
// layout of GptLora::layers (adapters, their gradients and the two AdamW moments
// alike) and add LoRA+ (a larger learning rate for every B matrix, Hayou et al.
// 2024). The frozen rows of an attn.c_attn lora_B (projections outside
// c_attn_qkv) have zero gradient and stay exactly zero.
#pragma once

#include <cstdint>
#include <vector>

#include "lorafast/gpt_lora.hpp"

namespace lorafast {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;     // decoupled: p <- p (1 - lr * weight_decay) (LoRA: on A and B)
  double lora_plus_ratio = 1.0;  // LoRA+: the learning rate of every B is ratio * lr (LoRA only)
  // 0 <= beta < 1, eps > 0, weight_decay >= 0, ratio > 0, all finite; Error(usage).
  void validate() const;
};

// Learning rate of update number `step` (1-based): linear warmup from peak/warmup
// to peak over steps 1..warmup, then a half cosine from peak down to
// floor_ratio * peak, reached at step `total` and kept after it.
struct LrSchedule {
  double peak = 2e-4;
  std::int64_t warmup = 0;
  std::int64_t total = 1;
  double floor_ratio = 0.1;
  double at(std::int64_t step) const;
  // peak > 0 finite, warmup >= 0, total >= 0, floor_ratio in [0, 1]; Error(usage).
  void validate() const;
};

// One tensor of an AdamW update: the parameter, its gradient and both moments (one
// shape, dtype T), its learning-rate factor and whether weight decay applies to it.
struct AdamWTensor {
  Tensor* param = nullptr;
  const Tensor* grad = nullptr;
  Tensor* m = nullptr;
  Tensor* v = nullptr;
  double lr_scale = 1.0;
  bool decay = true;
};

// One AdamW update of every listed tensor, element by element in double, with
// t = ++step, rate = lr * lr_scale and wd = options.weight_decay (0 without decay):
//   p <- p (1 - rate wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
//   p <- p - rate (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
template <class T>
void adamw_update(const std::vector<AdamWTensor>& tensors, std::int64_t& step, const AdamWOptions& options,
                  double lr);

// Tensor lists (any layout; `acc` and `g` of matching shapes and dtypes):
// sqrt(sum of squares) accumulated in double in list order; every tensor times
// `factor`; acc[k] += g[k].
double global_grad_norm(const std::vector<const Tensor*>& grads);
void scale_tensors(const std::vector<Tensor*>& tensors, double factor);
void add_tensors(const std::vector<Tensor*>& acc, const std::vector<const Tensor*>& g);
// clip_grad_norm (below) of a tensor list.
double clip_grad_norm(const std::vector<Tensor*>& grads, double max_norm);

// First and second moments (dtype T, the adapters' layout) and the number of
// updates applied so far (the t of the bias correction).
template <class T>
struct AdamWState {
  std::vector<LoraLayer> m, v;
  std::int64_t step = 0;
};

// Zero moments shaped like `lora`'s adapters.
template <class T>
AdamWState<T> init_adamw_state(const GptLora<T>& lora);

// adamw_update of every adapter tensor at learning rate `lr` (B: lr * ratio), all
// with weight decay, t = ++state.step. The frozen c_attn rows of B are re-zeroed afterwards.
template <class T>
void adamw_step(GptLora<T>& lora, const std::vector<LoraLayer>& grads, AdamWState<T>& state,
                const AdamWOptions& options, double lr);

// sqrt(sum of squares) of every tensor of `grads`, accumulated in double in a fixed order.
double global_grad_norm(const std::vector<LoraLayer>& grads);

// torch.nn.utils.clip_grad_norm_: when the global norm exceeds `max_norm`, scales
// every gradient by max_norm / (norm + 1e-6). Returns the norm before clipping.
// max_norm <= 0 disables clipping (the norm is still returned).
double clip_grad_norm(std::vector<LoraLayer>& grads, double max_norm);

// acc += g, tensor by tensor (same layout, same dtype); `acc` empty: becomes a copy of g.
void accumulate_grads(std::vector<LoraLayer>& acc, const std::vector<LoraLayer>& g);
// Every tensor of `grads` multiplied by `factor` (e.g. 1/K after K micro-batches).
void scale_grads(std::vector<LoraLayer>& grads, double factor);

// The tensors of a list in the canonical order: layer, then module
// (every_lora_target), then lora_A before lora_B.
std::vector<Tensor*> lora_tensor_list(std::vector<LoraLayer>& layers);
std::vector<const Tensor*> lora_tensor_list(const std::vector<LoraLayer>& layers);

}  // namespace lorafast
