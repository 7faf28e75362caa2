// The embedded default of `lorafast finetune` (INTERFACE.md: `finetune` with no
// arguments): a small byte-level base model pretrained on Tiny Shakespeare
// (models/default) and a short corpus it has never seen (data/lora_and_adam.txt),
// shipped in the repository, plus the loss-curve script (scripts/plot_loss.py).
#pragma once

#include <filesystem>
#include <string>

namespace lorafast::cli {

struct DefaultAssets {
  std::filesystem::path root;  // holds models/, data/ and scripts/

  std::filesystem::path model() const { return root / "models" / "default"; }
  std::filesystem::path corpus() const { return root / "data" / "lora_and_adam.txt"; }
  std::filesystem::path plot_script() const { return root / "scripts" / "plot_loss.py"; }
};

// The first directory holding models/default/config.json among: the executable's
// directory, its parent (a build tree inside the source tree), ../share/lorafast
// (an install) and the source tree the program was built from. Error(bad_input)
// listing the places searched when there is none.
DefaultAssets find_default_assets();

// The prompt of the before/after samples of the default run.
inline const std::string default_sample_prompt = "LORA:\n";

}  // namespace lorafast::cli
