// AdamW over the LoRA adapters, gradient clipping and accumulation.
#include <cmath>

#include "lorafast/train_optimizer.hpp"

namespace lorafast {
namespace {

constexpr auto usage = ErrorKind::usage;

template <class Layers, class Ptr>
std::vector<Ptr> list_of(Layers& layers) {
  std::vector<Ptr> out;
  for (auto& layer : layers)
    for (auto target : all_lora_targets)
      if (auto& adapter = layer[static_cast<std::size_t>(target)]) {
        out.push_back(&adapter->a);
        out.push_back(&adapter->b);
      }
  return out;
}

template <class T>
void for_each_element(Tensor& t, double factor) {
  T* p = t.data<T>();
  for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(static_cast<double>(p[i]) * factor);
}

void scale_tensor(Tensor& t, double factor) {
  t.dtype() == DType::f64 ? for_each_element<double>(t, factor) : for_each_element<float>(t, factor);
}

template <class T>
void add_tensor(Tensor& acc, const Tensor& g) {
  T* a = acc.data<T>();
  const T* b = g.data<T>();
  for (std::int64_t i = 0; i < acc.numel(); ++i) a[i] += b[i];
}

bool finite_in(double x, double lo, double hi) { return std::isfinite(x) && x >= lo && x <= hi; }

}  // namespace

void AdamWOptions::validate() const {
  LF_CHECK(finite_in(beta1, 0, 1) && beta1 < 1, usage, "AdamW beta1 must be in [0, 1), got ", beta1);
  LF_CHECK(finite_in(beta2, 0, 1) && beta2 < 1, usage, "AdamW beta2 must be in [0, 1), got ", beta2);
  LF_CHECK(std::isfinite(eps) && eps > 0, usage, "AdamW eps must be positive, got ", eps);
  LF_CHECK(finite_in(weight_decay, 0, 1e6), usage, "--weight-decay must be a non-negative number, got ", weight_decay);
  LF_CHECK(std::isfinite(lora_plus_ratio) && lora_plus_ratio > 0, usage,
           "--lora-plus-ratio must be a positive number, got ", lora_plus_ratio);
}

std::vector<Tensor*> lora_tensor_list(std::vector<LoraLayer>& layers) {
  return list_of<std::vector<LoraLayer>, Tensor*>(layers);
}

std::vector<const Tensor*> lora_tensor_list(const std::vector<LoraLayer>& layers) {
  return list_of<const std::vector<LoraLayer>, const Tensor*>(layers);
}

template <class T>
AdamWState<T> init_adamw_state(const GptLora<T>& lora) {
  AdamWState<T> state;
  state.m.resize(lora.layers.size());
  for (std::size_t i = 0; i < lora.layers.size(); ++i)
    for (std::size_t t = 0; t < lora_target_count; ++t)
      if (const auto& a = lora.layers[i][t])
        state.m[i][t] = LoraAdapter{Tensor(dtype_of<T>(), a->a.shape()), Tensor(dtype_of<T>(), a->b.shape())};
  state.v = state.m;
  return state;
}

template <class T>
void adamw_step(GptLora<T>& lora, const std::vector<LoraLayer>& grads, AdamWState<T>& state,
                const AdamWOptions& o, double lr) {
  auto params = lora_tensor_list(lora.layers);
  const auto g = lora_tensor_list(grads);
  auto m = lora_tensor_list(state.m), v = lora_tensor_list(state.v);
  LF_ASSERT(g.size() == params.size() && m.size() == params.size() && v.size() == params.size());
  const std::int64_t t = ++state.step;
  const double correction1 = 1.0 - std::pow(o.beta1, static_cast<double>(t));
  const double correction2 = 1.0 - std::pow(o.beta2, static_cast<double>(t));
  for (std::size_t k = 0; k < params.size(); ++k) {
    const bool is_b = k % 2 == 1;  // the list alternates lora_A, lora_B
    const double rate = is_b ? lr * o.lora_plus_ratio : lr;
    const double decay = 1.0 - rate * o.weight_decay;
    LF_ASSERT(g[k]->numel() == params[k]->numel());
    T* p = params[k]->template data<T>();
    T* mk = m[k]->template data<T>();
    T* vk = v[k]->template data<T>();
    const T* gk = g[k]->template data<T>();
    for (std::int64_t i = 0; i < params[k]->numel(); ++i) {
      const double grad = gk[i];
      const double m_new = o.beta1 * mk[i] + (1.0 - o.beta1) * grad;
      const double v_new = o.beta2 * vk[i] + (1.0 - o.beta2) * grad * grad;
      mk[i] = static_cast<T>(m_new);
      vk[i] = static_cast<T>(v_new);
      const double update = (m_new / correction1) / (std::sqrt(v_new / correction2) + o.eps);
      p[i] = static_cast<T>(static_cast<double>(p[i]) * decay - rate * update);
    }
  }
  mask_c_attn_rows(lora.layers, lora.config);
}

double global_grad_norm(const std::vector<LoraLayer>& grads) {
  double sum = 0;
  for (const Tensor* t : lora_tensor_list(grads))
    for (std::int64_t i = 0; i < t->numel(); ++i) sum += t->at(i) * t->at(i);
  return std::sqrt(sum);
}

double clip_grad_norm(std::vector<LoraLayer>& grads, double max_norm) {
  const double norm = global_grad_norm(grads);
  if (max_norm > 0 && norm > max_norm) scale_grads(grads, max_norm / (norm + 1e-6));
  return norm;
}

void accumulate_grads(std::vector<LoraLayer>& acc, const std::vector<LoraLayer>& g) {
  if (acc.empty()) {
    acc = g;
    return;
  }
  auto a = lora_tensor_list(acc);
  const auto b = lora_tensor_list(g);
  LF_ASSERT(a.size() == b.size());
  for (std::size_t k = 0; k < a.size(); ++k) {
    LF_ASSERT(a[k]->shape() == b[k]->shape() && a[k]->dtype() == b[k]->dtype());
    a[k]->dtype() == DType::f64 ? add_tensor<double>(*a[k], *b[k]) : add_tensor<float>(*a[k], *b[k]);
  }
}

void scale_grads(std::vector<LoraLayer>& grads, double factor) {
  for (Tensor* t : lora_tensor_list(grads)) scale_tensor(*t, factor);
}

template AdamWState<float> init_adamw_state<float>(const GptLora<float>&);
template AdamWState<double> init_adamw_state<double>(const GptLora<double>&);
template void adamw_step<float>(GptLora<float>&, const std::vector<LoraLayer>&, AdamWState<float>&,
                                const AdamWOptions&, double);
template void adamw_step<double>(GptLora<double>&, const std::vector<LoraLayer>&, AdamWState<double>&,
                                 const AdamWOptions&, double);

}  // namespace lorafast
