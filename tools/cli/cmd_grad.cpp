// `lorafast grad`: one forward + backward of LoRA attention from a case file.
#include <chrono>
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "lorafast/grad_case.hpp"
#include "lorafast/safetensors.hpp"
#include "model_flags.hpp"

namespace lorafast::cli {
namespace {

struct GradFlags {
  ModelFlags model;
  std::string out;
};

void print_result(const GradFlags& f, const LoraAttentionGrads& grads, double seconds) {
  // Until the almost-linear path lands, every head is computed exactly.
  const std::string method = "exact";
  if (f.model.explain)
    for (std::int64_t h = 0; h < f.model.heads; ++h)
      std::fprintf(stderr, "head %lld: exact (the almost-linear methods are not in this build yet)\n",
                   static_cast<long long>(h));
  if (f.model.json) {
    nlohmann::json heads = nlohmann::json::array();
    for (std::int64_t h = 0; h < f.model.heads; ++h)
      heads.push_back({{"method", method}, {"degree", nullptr}, {"features", nullptr},
                       {"score_bound", nullptr}, {"error_bound", 0.0}});
    const nlohmann::json out{{"loss", grads.loss}, {"seconds", seconds}, {"method", method}, {"heads", heads}};
    std::printf("%s\n", out.dump().c_str());
    return;
  }
  std::printf("loss %.10g  (%s, %.3f s)\nwrote %s\n", grads.loss, method.c_str(), seconds, f.out.c_str());
}

void run_grad(const GradFlags& f) {
  f.model.check_method();
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
