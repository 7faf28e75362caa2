// `lorafast grad`: one forward + backward of LoRA attention from a case file.
#include <chrono>
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "lorafast/grad_case.hpp"
#include "lorafast/safetensors.hpp"
#include "model_flags.hpp"
#include "precision.hpp"

namespace lorafast::cli {
namespace {

struct GradFlags {
  ModelFlags model;
  std::string out;
};

// The overall method: the one every head used, or "mixed".
std::string overall_method(const std::vector<HeadDecision>& heads) {
  for (const auto& h : heads)
    if (h.method != heads.front().method) return "mixed";
  return heads.empty() ? "exact" : method_name(heads.front().method);
}

nlohmann::json head_json(const HeadDecision& d) {
  auto optional_integer = [](bool present, std::int64_t value) {
    return present ? nlohmann::json(value) : nlohmann::json();
  };
  const bool surrogate = d.method != Method::exact;
  return {{"method", method_name(d.method)},
          {"degree", optional_integer(surrogate, d.degree)},
          {"features", optional_integer(surrogate, d.features)},
          {"score_bound", d.raw_score_bound},
          {"centred_score_bound", d.score_bound},
          {"error_bound", d.error_bound},
          {"gradient_bound", d.gradient_bound},
          {"reason", d.reason}};
}

void print_result(const GradFlags& f, const LoraAttentionGrads& grads, double seconds) {
  const std::string method = overall_method(grads.heads);
  if (f.model.explain)
    for (std::size_t h = 0; h < grads.heads.size(); ++h)
      std::fprintf(stderr, "head %zu: %s\n", h, grads.heads[h].reason.c_str());
  if (f.model.json) {
    nlohmann::json heads = nlohmann::json::array();
    for (const auto& d : grads.heads) heads.push_back(head_json(d));
    const nlohmann::json out{{"loss", grads.loss}, {"seconds", seconds}, {"method", method}, {"heads", heads}};
    std::printf("%s\n", out.dump().c_str());
    return;
  }
  std::printf("loss %.10g  (%s, %.3f s)\nwrote %s\n", grads.loss, method.c_str(), seconds, f.out.c_str());
}

void run_grad(const GradFlags& f) {
  f.model.check_degree();
  note_bf16_fallback(f.model.dtype);
  auto inputs = grad_inputs_from_tensors(read_safetensors(f.model.in).tensors, f.model.in);
  const auto options = f.model.options();
  const auto start = std::chrono::steady_clock::now();
  const auto grads = lora_attention_grad(inputs, options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  write_safetensors(f.out, tensors_from_grads(grads, options.dtype));
  print_result(f, grads, seconds);
}

}  // namespace

void add_grad_command(CLI::App& app) {
  auto flags = std::make_shared<GradFlags>();
  auto* cmd = app.add_subcommand("grad", "One forward + backward of LoRA attention (loss and adapter gradients)");
  flags->model.add_to(*cmd);
  cmd->add_option("--out", flags->out, "Output file (safetensors): loss, d_lora_a_p, d_lora_b_p")->required();
  add_threads_option(*cmd);
  cmd->callback([flags] { run_grad(*flags); });
}

}  // namespace lorafast::cli
