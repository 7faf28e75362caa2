// `lorafast case`: writes a random gradient case by name (the names tests and
// benchmarks share, see case_spec.hpp), for examples and outside experiments.
#include <cstdio>
#include <memory>

#include "commands.hpp"
#include "lorafast/case_spec.hpp"
#include "lorafast/grad_case.hpp"
#include "lorafast/safetensors.hpp"

namespace lorafast::cli {
namespace {

struct CaseFlags {
  std::string name;
  std::string out;
  std::string dtype = "f32";
  std::uint64_t seed = 0;
  double weight_gain = 1.0;
};

void run_case(const CaseFlags& f) {
  CaseSpec spec = CaseSpec::parse(f.name);
  spec.seed = f.seed;
  TensorMap tensors = tensors_from_grad_inputs(make_case(spec, f.weight_gain));
  const DType dtype = f.dtype == "f64" ? DType::f64 : DType::f32;
  for (auto& [name, tensor] : tensors) tensor = tensor.to(dtype);
  write_safetensors(f.out, tensors, {{"case", spec.name()}, {"seed", std::to_string(f.seed)}});
  std::printf("wrote %s (%s); run it with: lorafast grad --in %s --out GRADS.safetensors --heads %lld%s\n",
              f.out.c_str(), spec.name().c_str(), f.out.c_str(), static_cast<long long>(spec.heads),
              spec.causal ? " --causal" : "");
}

}  // namespace

void add_case_command(CLI::App& app) {
  auto flags = std::make_shared<CaseFlags>();
  auto* cmd = app.add_subcommand("case", "Write a random gradient case, e.g. grad/causal/N1/L97/E5/H3/R8/qkv");
  cmd->add_option("--name", flags->name, "Case name grad/{causal|bidir}/[N..]/L../E../H../[R..]/{qkv subset}")
      ->required();
  cmd->add_option("--out", flags->out, "Output file (safetensors)")->required();
  cmd->add_option("--dtype", flags->dtype, "f32 | f64")->check(CLI::IsMember({"f32", "f64"}));
  cmd->add_option("--seed", flags->seed, "Random seed");
  cmd->add_option("--weight-gain", flags->weight_gain, "Multiplies w_q and w_k (scales the attention scores)");
  add_threads_option(*cmd);
  cmd->callback([flags] { run_case(*flags); });
}

}  // namespace lorafast::cli
