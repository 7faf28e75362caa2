#include "gpt_model_flags.hpp"

namespace lorafast::cli {

void GptModelFlags::add_to(CLI::App& c, bool with_adapter, bool model_required) {
  auto* m = c.add_option("--model", model, "Model directory (config.json, model.safetensors; GPT-2 layout)");
  if (model_required) m->required();
  if (with_adapter) c.add_option("--adapter", adapter, "PEFT LoRA adapter directory (e.g. finetune's --out)");
  c.add_option("--dtype", dtype, "Compute precision: f32 | f64")->check(CLI::IsMember({"f32", "f64"}));
}

}  // namespace lorafast::cli
