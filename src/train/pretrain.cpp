// Pretraining: the update loop of update_loop.hpp over every base weight.
#include <algorithm>
#include <optional>
#include <type_traits>

#include "lorafast/decoder.hpp"
#include "lorafast/pretrain.hpp"
#include "train/update_loop.hpp"

namespace lorafast {
namespace {

template <class T>
std::vector<Tensor*> tensor_list(GptWeights<T>& w) {
  std::vector<Tensor*> out;
  for (auto& [name, t] : gpt_named_tensors(w)) out.push_back(t);
  return out;
}

template <class T>
std::vector<const Tensor*> tensor_list(const GptWeights<T>& w) {
  std::vector<const Tensor*> out;
  for (auto& [name, t] : gpt_named_tensors(w)) out.push_back(t);
  return out;
}

template <class T>
std::vector<Tensor*> tensor_list(LlamaWeights<T>& w) {
  std::vector<Tensor*> out;
  for (auto& x : llama_named_tensors(w)) out.push_back(x.tensor);
  return out;
}

template <class T>
std::vector<const Tensor*> tensor_list(const LlamaWeights<T>& w) {
  std::vector<const Tensor*> out;
  for (auto& x : llama_named_tensors(w)) out.push_back(x.tensor);
  return out;
}

// Pretraining as update_loop.hpp's Run: gradients of every base weight.
template <class Weights>
class FullRun {
  using T = typename Weights::value_type;

 public:
  FullRun(PretrainStateOf<Weights>& state, const Tokens& val, const TrainOptions& options)
      : state_(state), val_(val), options_(options) {}

  std::int64_t step() const { return state_.step; }

  double add_micro_batch(const TokenBatch& batch) {
    auto result = model_loss_and_full_grad(computed(), static_cast<const GptLora<T>*>(nullptr), batch,
                                           options_.recompute);
    if (grads_)
      add_tensors(tensor_list(*grads_), tensor_list(std::as_const(result.d_weights)));
    else
      grads_ = std::move(result.d_weights);
    return result.loss;
  }

  double finish_update(std::int64_t micro_batches, double clip, double lr) {
    const auto grads = tensor_list(*grads_);
    if (micro_batches > 1) scale_tensors(grads, 1.0 / static_cast<double>(micro_batches));
    const double norm = clip_grad_norm(grads, clip);
    pretrain_adamw_step(state_, *grads_, options_.adamw, lr);
    grads_.reset();
    bf16_stale_ = true;
    return norm;
  }

  double validation_loss() {
    return evaluate_windows(computed(), static_cast<const GptLora<T>*>(nullptr), val_, options_.seq_len,
                            options_.val_windows, options_.batch)
        .loss;
  }

 private:
  // The weights the passes multiply by: the f32 master weights, or with bf16 their
  // copy with the frozen matrices in bf16 (store_frozen_bf16), made once and then
  // refreshed from the master weights once per update, tensor by tensor (no second
  // f32 copy of the model).
  const Weights& computed() {
    if constexpr (std::is_same_v<T, float>) {
      if (!options_.bf16) return state_.weights;
      if (!bf16_) {
        store_frozen_bf16(bf16_.emplace(state_.weights));
      } else if (bf16_stale_) {
        const auto master = tensor_list(std::as_const(state_.weights));
        const auto copy = tensor_list(*bf16_);
        for (std::size_t k = 0; k < copy.size(); ++k) *copy[k] = master[k]->to(copy[k]->dtype());
      }
      bf16_stale_ = false;
      return *bf16_;
    }
    return state_.weights;
  }

  PretrainStateOf<Weights>& state_;
  const Tokens& val_;
  const TrainOptions& options_;
  std::optional<Weights> grads_, bf16_;
  bool bf16_stale_ = false;  // an update changed the master weights since bf16_ was made
};

}  // namespace

template <class Weights>
PretrainStateOf<Weights> pretrain_state_from(Weights weights) {
  PretrainStateOf<Weights> state;
  state.m = weights;
  for (Tensor* t : tensor_list(state.m)) std::fill(t->bytes(), t->bytes() + t->nbytes(), std::byte{0});
  state.v = state.m;
  state.weights = std::move(weights);
  return state;
}

template <class T>
PretrainState<T> init_pretrain_state(const GptConfig& config, std::uint64_t seed) {
  return pretrain_state_from(init_gpt_weights<T>(config, seed));
}

template <class Weights>
void pretrain_adamw_step(PretrainStateOf<Weights>& state, const Weights& grads, const AdamWOptions& options,
                         double lr) {
  using T = typename Weights::value_type;
  const auto p = tensor_list(state.weights);
  const auto g = tensor_list(grads);
  const auto m = tensor_list(state.m), v = tensor_list(state.v);
  LF_ASSERT(g.size() == p.size() && m.size() == p.size() && v.size() == p.size());
  std::vector<AdamWTensor> tensors;
  for (std::size_t k = 0; k < p.size(); ++k)
    tensors.push_back({p[k], g[k], m[k], v[k], 1.0, p[k]->shape().size() == 2});
  adamw_update<T>(tensors, state.step, options, lr);
}

template <class Weights>
TrainOutcome pretrain(PretrainStateOf<Weights>& state, const TrainValSplit& data, const TrainOptions& options,
                      const TrainCallbacks& callbacks) {
  validate_training_run(state.weights.config, data, options);
  // FullRun does not sum its gradient over processes: data-parallel pretraining is not implemented.
  LF_CHECK(options.processes.size == 1, ErrorKind::usage, "pretraining runs in one process, not ",
           options.processes.size);
  FullRun<Weights> run(state, data.val, options);
  return detail::run_updates(
      run, [&](std::int64_t step) { return detail::window_batches(data.train, options, step); }, options, callbacks);
}

#define LORAFAST_INSTANTIATE(W)                                                                           \
  template PretrainStateOf<W> pretrain_state_from<W>(W);                                                 \
  template void pretrain_adamw_step<W>(PretrainStateOf<W>&, const W&, const AdamWOptions&, double);       \
  template TrainOutcome pretrain<W>(PretrainStateOf<W>&, const TrainValSplit&, const TrainOptions&,       \
                                    const TrainCallbacks&);
LORAFAST_INSTANTIATE(GptWeights<float>)
LORAFAST_INSTANTIATE(GptWeights<double>)
LORAFAST_INSTANTIATE(LlamaWeights<float>)
LORAFAST_INSTANTIATE(LlamaWeights<double>)
#undef LORAFAST_INSTANTIATE
template PretrainState<float> init_pretrain_state<float>(const GptConfig&, std::uint64_t);
template PretrainState<double> init_pretrain_state<double>(const GptConfig&, std::uint64_t);

}  // namespace lorafast
