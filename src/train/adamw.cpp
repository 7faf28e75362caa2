// AdamW over a list of tensors (and over the LoRA adapters), gradient clipping and accumulation.
#include <cmath>

#include "lorafast/train_optimizer.hpp"

namespace lorafast {
namespace {

constexpr auto usage = ErrorKind::usage;

template <class Layers, class Ptr>
std::vector<Ptr> list_of(Layers& layers) {
  std::vector<Ptr> out;
  for (auto& layer : layers)
    for (auto target : every_lora_target)
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
  LF_CHECK(finite_in(weight_decay, 0, 1e6), usage, "`weight_decay` must be a non-negative number, got ", weight_decay);
  LF_CHECK(std::isfinite(lora_plus_ratio) && lora_plus_ratio > 0, usage,
           "`lora_plus_ratio` must be a positive number, got ", lora_plus_ratio);
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
void adamw_update(const std::vector<AdamWTensor>& tensors, std::int64_t& step, const AdamWOptions& o, double lr) {
  const std::int64_t t = ++step;
  const double correction1 = 1.0 - std::pow(o.beta1, static_cast<double>(t));
  const double correction2 = 1.0 - std::pow(o.beta2, static_cast<double>(t));
  for (const AdamWTensor& x : tensors) {
    const double rate = lr * x.lr_scale;
    const double decay = 1.0 - rate * (x.decay ? o.weight_decay : 0.0);
    const std::int64_t n = x.param->numel();
    LF_ASSERT(x.grad->numel() == n && x.m->numel() == n && x.v->numel() == n);
    T* p = x.param->template data<T>();
    T* m = x.m->template data<T>();
    T* v = x.v->template data<T>();
    const T* g = x.grad->template data<T>();
    for (std::int64_t i = 0; i < n; ++i) {
      const double grad = g[i];
      const double m_new = o.beta1 * m[i] + (1.0 - o.beta1) * grad;
      const double v_new = o.beta2 * v[i] + (1.0 - o.beta2) * grad * grad;
      m[i] = static_cast<T>(m_new);
      v[i] = static_cast<T>(v_new);
      const double update = (m_new / correction1) / (std::sqrt(v_new / correction2) + o.eps);
      p[i] = static_cast<T>(static_cast<double>(p[i]) * decay - rate * update);
    }
  }
}

template <class T>
void adamw_step(GptLora<T>& lora, const std::vector<LoraLayer>& grads, AdamWState<T>& state,
                const AdamWOptions& o, double lr) {
  const auto params = lora_tensor_list(lora.layers);
  const auto g = lora_tensor_list(grads);
  const auto m = lora_tensor_list(state.m), v = lora_tensor_list(state.v);
  LF_ASSERT(g.size() == params.size() && m.size() == params.size() && v.size() == params.size());
  std::vector<AdamWTensor> tensors;
  for (std::size_t k = 0; k < params.size(); ++k) {
    const bool is_b = k % 2 == 1;  // the list alternates lora_A, lora_B
    tensors.push_back({params[k], g[k], m[k], v[k], is_b ? o.lora_plus_ratio : 1.0, true});
  }
  adamw_update<T>(tensors, state.step, o, lr);
  mask_c_attn_rows(lora.layers, lora.config);
}

double global_grad_norm(const std::vector<const Tensor*>& grads) {
  double sum = 0;
  for (const Tensor* t : grads)
    for (std::int64_t i = 0; i < t->numel(); ++i) sum += t->at(i) * t->at(i);
  return std::sqrt(sum);
}

void scale_tensors(const std::vector<Tensor*>& tensors, double factor) {
  for (Tensor* t : tensors) scale_tensor(*t, factor);
}

void add_tensors(const std::vector<Tensor*>& acc, const std::vector<const Tensor*>& g) {
  LF_ASSERT(acc.size() == g.size());
  for (std::size_t k = 0; k < acc.size(); ++k) {
    LF_ASSERT(acc[k]->shape() == g[k]->shape() && acc[k]->dtype() == g[k]->dtype());
    acc[k]->dtype() == DType::f64 ? add_tensor<double>(*acc[k], *g[k]) : add_tensor<float>(*acc[k], *g[k]);
  }
}

double clip_grad_norm(const std::vector<Tensor*>& grads, double max_norm) {
  const double norm = global_grad_norm(std::vector<const Tensor*>(grads.begin(), grads.end()));
  if (max_norm > 0 && norm > max_norm) scale_tensors(grads, max_norm / (norm + 1e-6));
  return norm;
}

double global_grad_norm(const std::vector<LoraLayer>& grads) { return global_grad_norm(lora_tensor_list(grads)); }

double clip_grad_norm(std::vector<LoraLayer>& grads, double max_norm) {
  return clip_grad_norm(lora_tensor_list(grads), max_norm);
}

void accumulate_grads(std::vector<LoraLayer>& acc, const std::vector<LoraLayer>& g) {
  if (acc.empty()) {
    acc = g;
    return;
  }
  add_tensors(lora_tensor_list(acc), lora_tensor_list(g));
}

void scale_grads(std::vector<LoraLayer>& grads, double factor) { scale_tensors(lora_tensor_list(grads), factor); }

template AdamWState<float> init_adamw_state<float>(const GptLora<float>&);
template AdamWState<double> init_adamw_state<double>(const GptLora<double>&);
template void adamw_update<float>(const std::vector<AdamWTensor>&, std::int64_t&, const AdamWOptions&, double);
template void adamw_update<double>(const std::vector<AdamWTensor>&, std::int64_t&, const AdamWOptions&, double);
template void adamw_step<float>(GptLora<float>&, const std::vector<LoraLayer>&, AdamWState<float>&,
                                const AdamWOptions&, double);
template void adamw_step<double>(GptLora<double>&, const std::vector<LoraLayer>&, AdamWState<double>&,
                                 const AdamWOptions&, double);

}  // namespace lorafast
