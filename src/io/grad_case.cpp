#include "lorafast/grad_case.hpp"

namespace lorafast {
namespace {

Tensor take(TensorMap& tensors, const std::string& name, const std::string& origin) {
  auto it = tensors.find(name);
  LF_CHECK(it != tensors.end(), ErrorKind::bad_input, origin, ": missing tensor '", name, "'");
  Tensor t = std::move(it->second);
  tensors.erase(it);
  return t;
}

}  // namespace

LoraAttentionInputs grad_inputs_from_tensors(TensorMap tensors, const std::string& origin) {
  LoraAttentionInputs in;
  in.x = take(tensors, "x", origin);
  in.y = take(tensors, "y", origin);
  // A single sequence may be given as [L, D]: it is the batch N = 1.
  if (in.x.rank() == 2) in.x = in.x.reshaped({1, in.x.dim(0), in.x.dim(1)});
  if (in.y.rank() == 2) in.y = in.y.reshaped({1, in.y.dim(0), in.y.dim(1)});
  for (auto p : all_projections) {
    const auto name = projection_name(p);
    const int i = static_cast<int>(p);
    in.w[i] = take(tensors, "w_" + name, origin);
    const bool has_a = tensors.count("lora_a_" + name) > 0, has_b = tensors.count("lora_b_" + name) > 0;
    LF_CHECK(has_a == has_b, ErrorKind::bad_input, origin, ": tensor '", has_a ? "lora_a_" : "lora_b_", name,
             "' has no partner '", has_a ? "lora_b_" : "lora_a_", name, "'");
    if (has_a) in.lora[i] = LoraAdapter{take(tensors, "lora_a_" + name, origin), take(tensors, "lora_b_" + name, origin)};
  }
  // Other tensors are ignored, but a misspelt adapter would silently train nothing.
  for (const auto& [name, tensor] : tensors)
    LF_CHECK(name.rfind("lora_", 0) != 0, ErrorKind::bad_input, origin, ": unknown tensor '", name,
             "' (adapters are lora_a_q, lora_b_q, lora_a_k, lora_b_k, lora_a_v, lora_b_v)");
  return in;
}

TensorMap tensors_from_grad_inputs(const LoraAttentionInputs& in) {
  TensorMap out{{"x", in.x}, {"y", in.y}};
  for (auto p : all_projections) {
    const auto name = projection_name(p);
    const int i = static_cast<int>(p);
    out["w_" + name] = in.w[i];
    if (!in.lora[i]) continue;
    out["lora_a_" + name] = in.lora[i]->a;
    out["lora_b_" + name] = in.lora[i]->b;
  }
  return out;
}

TensorMap tensors_from_grads(const LoraAttentionGrads& grads, DType dtype) {
  Tensor loss(DType::f64, {1});
  loss.data<double>()[0] = grads.loss;
  TensorMap out{{"loss", loss.to(dtype)}};
  for (auto p : all_projections) {
    const int i = static_cast<int>(p);
    if (!grads.d_lora[i]) continue;
    out["d_lora_a_" + projection_name(p)] = grads.d_lora[i]->a.to(dtype);
    out["d_lora_b_" + projection_name(p)] = grads.d_lora[i]->b.to(dtype);
  }
  return out;
}

}  // namespace lorafast
