// `lorafast merge`: an adapter merged into its base model, written as transformers'
// save_pretrained writes it (merge.hpp; INTERFACE.md "Export").
#include <cstdio>
#include <memory>

#include "commands.hpp"
#include "lorafast/merge.hpp"

namespace lorafast::cli {
namespace {

struct MergeFlags {
  std::string model, adapter, out, dtype, max_shard_size = "50GB";
  bool force = false;
};

void run(const MergeFlags& f) {
  MergeOptions options;
  if (!f.dtype.empty()) options.dtype = parse_storage_type(f.dtype);
  options.max_shard_bytes = parse_shard_size(f.max_shard_size);
  options.replace = f.force;
  const MergeSummary s = merge_adapter(f.model, f.adapter, f.out, options);
  std::printf("merged %lld of %lld tensors into %s: %lld safetensors file%s, %.1f MB of %s weights\n",
              static_cast<long long>(s.merged), static_cast<long long>(s.tensors), f.out.c_str(),
              static_cast<long long>(s.files), s.files == 1 ? "" : "s", static_cast<double>(s.bytes) / 1e6,
              storage_type_name(s.dtype).c_str());
}

}  // namespace

void add_merge_command(CLI::App& app) {
  auto flags = std::make_shared<MergeFlags>();
  auto* cmd = app.add_subcommand("merge", "Merge a PEFT LoRA adapter into its base model (a transformers model directory)");
  cmd->add_option("--model", flags->model, "Base model directory")->required();
  cmd->add_option("--adapter", flags->adapter, "PEFT adapter directory")->required();
  cmd->add_option("--out", flags->out, "Output model directory (must not exist, unless --force)")->required();
  cmd->add_option("--dtype", flags->dtype, "Weights written as f32, bf16 or f64 (default: the base's)");
  cmd->add_option("--max-shard-size", flags->max_shard_size,
                  "Split the weights into shards of at most this size, as save_pretrained does (default 50GB)");
  cmd->add_flag("--force", flags->force, "Replace --out if it exists (atomically)");
  add_threads_option(*cmd);
  cmd->callback([flags] { run(*flags); });
}

}  // namespace lorafast::cli
