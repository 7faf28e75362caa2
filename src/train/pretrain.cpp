// Pretraining: the update loop of update_loop.hpp over every base weight.
#include <optional>

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

// Pretraining as update_loop.hpp's Run: gradients of every base weight.
template <class T>
class FullRun {
 public:
  FullRun(PretrainState<T>& state, const Tokens& val, const TrainOptions& options)
      : state_(state), val_(val), options_(options) {}

  std::int64_t step() const { return state_.step; }

  double add_micro_batch(const TokenBatch& batch) {
    auto result = gpt_loss_and_full_grad(state_.weights, static_cast<const GptLora<T>*>(nullptr), batch);
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
    return norm;
  }

  double validation_loss() const {
    return evaluate_windows(state_.weights, static_cast<const GptLora<T>*>(nullptr), val_, options_.seq_len,
                            options_.val_windows, options_.batch)
        .loss;
  }

 private:
  PretrainState<T>& state_;
  const Tokens& val_;
  const TrainOptions& options_;
  std::optional<GptWeights<T>> grads_;
};

}  // namespace

template <class T>
PretrainState<T> init_pretrain_state(const GptConfig& config, std::uint64_t seed) {
  PretrainState<T> state;
  state.weights = init_gpt_weights<T>(config, seed);
  state.m = zero_gpt_weights<T>(config);
  state.v = zero_gpt_weights<T>(config);
  return state;
}

template <class T>
void pretrain_adamw_step(PretrainState<T>& state, const GptWeights<T>& grads, const AdamWOptions& options, double lr) {
  const auto p = gpt_named_tensors(state.weights);
  const auto g = gpt_named_tensors(grads);
  const auto m = gpt_named_tensors(state.m), v = gpt_named_tensors(state.v);
  LF_ASSERT(g.size() == p.size() && m.size() == p.size() && v.size() == p.size());
  std::vector<AdamWTensor> tensors;
  for (std::size_t k = 0; k < p.size(); ++k)
    tensors.push_back({p[k].second, g[k].second, m[k].second, v[k].second, 1.0, p[k].second->shape().size() == 2});
  adamw_update<T>(tensors, state.step, options, lr);
}

template <class T>
TrainOutcome pretrain(PretrainState<T>& state, const TrainValSplit& data, const TrainOptions& options,
                      const TrainCallbacks& callbacks) {
  validate_training_run(state.weights.config, data, options);
  FullRun<T> run(state, data.val, options);
  return detail::run_updates(run, data.train, options, callbacks);
}

#define LORAFAST_INSTANTIATE(T)                                                                                 \
  template PretrainState<T> init_pretrain_state<T>(const GptConfig&, std::uint64_t);                           \
  template void pretrain_adamw_step<T>(PretrainState<T>&, const GptWeights<T>&, const AdamWOptions&, double);   \
  template TrainOutcome pretrain<T>(PretrainState<T>&, const TrainValSplit&, const TrainOptions&,               \
                                    const TrainCallbacks&);
LORAFAST_INSTANTIATE(float)
LORAFAST_INSTANTIATE(double)
#undef LORAFAST_INSTANTIATE

}  // namespace lorafast
