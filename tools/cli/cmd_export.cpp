// `lorafast export gguf`: a model (with an adapter merged) or an adapter alone as a
// llama.cpp GGUF file (gguf_export.hpp; INTERFACE.md "Export").
#include <cstdio>
#include <memory>

#include "commands.hpp"
#include "lorafast/gguf_export.hpp"

namespace lorafast::cli {
namespace {

struct ExportFlags {
  std::string model, adapter, out, type = "f32";
  bool adapter_only = false, force = false;
};

void run(const ExportFlags& f) {
  GgufExportOptions options;
  options.type = parse_ggml_type(f.type);
  options.adapter_only = f.adapter_only;
  options.replace = f.force;
  const auto adapter = f.adapter.empty() ? std::nullopt : std::optional<std::filesystem::path>(f.adapter);
  const GgufExportSummary s = export_gguf(f.model, adapter, f.out, options);
  std::printf("wrote %s: llama.cpp %s %s, %lld tensors, %lld keys\n", f.out.c_str(), s.architecture.c_str(),
              f.adapter_only ? "LoRA adapter" : "model", static_cast<long long>(s.tensors),
              static_cast<long long>(s.keys));
}

}  // namespace

void add_export_command(CLI::App& app) {
  auto flags = std::make_shared<ExportFlags>();
  auto* cmd = app.add_subcommand("export", "Write a model or adapter in another format");
  cmd->require_subcommand(1);
  auto* gguf = cmd->add_subcommand("gguf", "A llama.cpp GGUF model (adapter merged if given) or LoRA adapter");
  gguf->add_option("--model", flags->model, "Base model directory")->required();
  gguf->add_option("--adapter", flags->adapter, "PEFT adapter directory: merged, or alone with --adapter-only");
  gguf->add_option("--out", flags->out, "Output .gguf file (must not exist, unless --force)")->required();
  gguf->add_option("--type", flags->type, "Type of the 2-D weights: f32, f16, bf16 or q8_0 (default f32)");
  gguf->add_flag("--adapter-only", flags->adapter_only, "Write the adapter as a llama.cpp LoRA GGUF for the base's GGUF");
  gguf->add_flag("--force", flags->force, "Replace --out if it exists");
  add_threads_option(*gguf);
  gguf->callback([flags] { run(*flags); });
}

}  // namespace lorafast::cli
