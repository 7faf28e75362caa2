#include "model_flags.hpp"

#include "commands.hpp"
#include "lorafast/cost_model.hpp"
#include "lorafast/error.hpp"

namespace lorafast::cli {

void ModelFlags::add_to(CLI::App& c) {
  c.add_option("--in", in, "Case file (safetensors): x, y, w_q, w_k, w_v, lora_a_p, lora_b_p")->required();
  c.add_option("--heads", heads, "Attention heads H (must divide D)")->check(positive);
  c.add_flag("--causal", causal, "Causal mask");
  c.add_option("--alpha", alpha, "LoRA alpha (default: R, i.e. scaling 1)");
  c.add_flag("--rslora", rslora, "rsLoRA scaling alpha / sqrt(R)");
  c.add_option("--scale", scale, "Score scale beta (default 1/sqrt(D/H))")->check(positive);
  c.add_option("--method", method, "exact | fast | chained | auto")
      ->check(CLI::IsMember({"exact", "fast", "chained", "auto"}));
  c.add_option("--eps", eps, "Target relative error of the gradients")->check(positive);
  c.add_option("--degree", degree, "Force the (even) Taylor degree of fast/chained")->check(non_negative);
  c.add_option("--dtype", dtype, "Compute and output precision: f32 | f64 | bf16 (mixed: bf16 products, f32 sums and outputs)")
      ->check(CLI::IsMember({"f32", "f64", "bf16"}));
  c.add_flag("--json", json, "Print one JSON object on stdout");
  c.add_flag("--explain", explain, "Explain the per-head method choice on stderr");
}

LoraAttentionOptions ModelFlags::options() const {
  LoraAttentionOptions o;
  o.attention.heads = heads;
  o.attention.causal = causal;
  o.attention.scale = scale.value_or(0.0);
  o.scaling.alpha = alpha;
  o.scaling.rslora = rslora;
  o.dtype = dtype == "f64" ? DType::f64 : DType::f32;
  o.bf16 = dtype == "bf16";
  o.request = attention_request(method, eps, degree);
  return o;
}

AttentionRequest attention_request(const std::string& method, double eps, std::optional<int> degree) {
  AttentionRequest r;
  r.method = parse_method(method);
  r.eps = eps;
  r.degree = degree;
  r.cost = load_cost_model(default_cost_model_path());  // written by `lorafast calibrate`
  return r;
}

void ModelFlags::check_degree() const { check_even_degree(degree); }

void check_even_degree(std::optional<int> degree) {
  LF_CHECK(!degree || *degree % 2 == 0, ErrorKind::bad_input, "--degree ", *degree,
           " is odd: odd Taylor degrees can make the softmax normaliser negative; use an even degree");
}

}  // namespace lorafast::cli
