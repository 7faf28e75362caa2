// Consistency checks on a gradient problem, naming the tensor or option at fault.
#include <cmath>

#include "lorafast/lora.hpp"

namespace lorafast {
namespace {

void check_shape(const Tensor& t, const std::string& name, const Shape& expected) {
  LF_CHECK(t.shape() == expected, ErrorKind::bad_input, "tensor '", name, "' has shape ", shape_str(t.shape()),
           ", expected ", shape_str(expected));
}

void check_finite(const Tensor& t, const std::string& name) {
  LF_CHECK(t.all_finite(), ErrorKind::bad_input, "tensor '", name, "' contains NaN or Inf");
}

}  // namespace

void validate(const LoraAttentionInputs& in, const LoraAttentionOptions& opt) {
  LF_CHECK(!opt.bf16 || opt.dtype == DType::f32, ErrorKind::usage,
           "lora attention: bf16 mixed precision computes in f32, not ", dtype_name(opt.dtype));
  LF_CHECK(in.x.rank() == 3, ErrorKind::bad_input, "tensor 'x' must be [N, L, D] or [L, D], got ",
           shape_str(in.x.shape()));
  const std::int64_t n = in.batch(), l = in.seq_len(), d = in.model_dim();
  LF_CHECK(n >= 1 && l >= 1 && d >= 1, ErrorKind::bad_input, "tensor 'x' is empty: ", shape_str(in.x.shape()));
  check_shape(in.y, "y", in.x.shape());
  for (auto p : all_projections) {
    const auto name = projection_name(p);
    const int i = static_cast<int>(p);
    check_shape(in.w[i], "w_" + name, {d, d});
    if (!in.lora[i]) continue;
    const auto& lora = *in.lora[i];
    LF_CHECK(lora.a.rank() == 2 && lora.a.dim(0) >= 1, ErrorKind::bad_input, "tensor 'lora_a_", name,
             "' must be [R, D] with R >= 1, got ", shape_str(lora.a.shape()));
    check_shape(lora.a, "lora_a_" + name, {lora.rank(), d});
    check_shape(lora.b, "lora_b_" + name, {d, lora.rank()});
  }
  check_finite(in.x, "x");
  check_finite(in.y, "y");
  for (auto p : all_projections) {
    const auto name = projection_name(p);
    const int i = static_cast<int>(p);
    check_finite(in.w[i], "w_" + name);
    if (!in.lora[i]) continue;
    check_finite(in.lora[i]->a, "lora_a_" + name);
    check_finite(in.lora[i]->b, "lora_b_" + name);
  }
  const auto& att = opt.attention;
  LF_CHECK(att.heads >= 1 && d % att.heads == 0, ErrorKind::usage, "`heads` ", att.heads,
           " must divide the model width D = ", d);
  LF_CHECK(std::isfinite(att.scale) && att.scale >= 0.0, ErrorKind::usage, "`scale` must be positive, got ",
           att.scale);
  LF_CHECK(!opt.scaling.alpha || std::isfinite(*opt.scaling.alpha), ErrorKind::usage,
           "`alpha` must be finite");
}

}  // namespace lorafast
