"""SmolLM3 (Llama with "NoPE" layers: every no_rope_layer_interval-th layer, or those
no_rope_layers marks 0, has no rotary embedding) against transformers'
SmolLM3ForCausalLM and PEFT, through the checks of test_llama_interop.py and
test_generate_vs_hf.py on tiny random models written by save_pretrained:

(a) `lorafast eval` equals transformers' loss (f64 and f32);
(b) a PEFT adapter (all-linear, B != 0) gives PEFT's loss;
(c) an adapter trained by `lorafast finetune` gives lorafast's loss in PeftModel;
(d) `lorafast model-grad` LoRA gradients equal autograd through transformers + PEFT;
(e) `lorafast generate --greedy` (KV cache) gives transformers' generate ids, with
    and without an adapter;
(f) `lorafast model-grad --full` gradients of every base weight and of an adapter
    equal autograd (test_llama_pretrain.py's check).

Cases: NoPE every 2nd layer (no_rope_layer_interval 2) tied; an explicit
no_rope_layers list with q/k/v/o biases, untied; sliding windows on the NoPE layers
(use_sliding_window, window 5 < T). A no_rope_layers entry other than 0 or 1, or a
list of the wrong length, exits 3 naming the file and the field.
Tolerance model: as the scripts whose checks run here (their docstrings): f64 loss
and gradients <= 1e-10 relative (the same function in IEEE double), f32 loss <= 1e-5
relative, greedy ids equal (f32 paths only where the f64 top-2 margin is >= 1e-3).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import torch
import transformers

import test_generate_vs_hf as generate
from hf_random import randomize
import test_llama_interop as interop
import test_llama_pretrain as pretrain

llama_family_build = interop.build


def build(kind, seed, **overrides):
    """test_llama_interop.build, plus kind "smollm3": random norms, biases and weights."""
    if kind != "smollm3":
        return llama_family_build(kind, seed, **overrides)
    torch.manual_seed(seed)
    config = dict(vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, no_rope_layer_interval=2,
                  pad_token_id=None, bos_token_id=None, eos_token_id=None)
    config.update(overrides)
    cls = transformers.SmolLM3ForCausalLM
    return randomize(cls(transformers.SmolLM3Config(**config))), cls


# The scripts' one_model() build their models through this module-level name;
# test_llama_pretrain.full_grads() loads the oracle by its CLASSES.
interop.build = generate.build = build
pretrain.CLASSES["smollm3"] = (transformers.SmolLM3Config, transformers.SmolLM3ForCausalLM)


def hostile_rope_layers(lf, tmp, model_dir, data_path):
    ev = ["eval", "--data", data_path, "--seq-len", interop.T, "--json", "--model"]
    for what, value in (("value-2", [1, 2, 1, 0]), ("short", [1, 0])):
        d = os.path.join(tmp, "smollm3-" + what)
        shutil.copytree(model_dir, d)
        path = os.path.join(d, "config.json")
        with open(path) as f:
            c = json.load(f)
        c["no_rope_layers"] = value
        with open(path, "w") as f:
            json.dump(c, f)
        interop.expect_error(lf, ev + [d], 3, "no_rope_layers", "smollm3 no_rope_layers %s names the field" % what)
        p = interop.run(lf, *ev, d, expect=3)
        interop.check(path in p.stderr, "smollm3 no_rope_layers %s names the file: %s" % (what, p.stderr.strip()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorafast", required=True)
    lf = ap.parse_args().lorafast
    print("transformers %s, torch %s" % (transformers.__version__, torch.__version__))
    with tempfile.TemporaryDirectory() as tmp:
        d, data = interop.one_model(lf, tmp, "smollm3-interval2-tied", "smollm3")
        interop.one_model(lf, tmp, "smollm3-list-bias-untied", "smollm3", no_rope_layers=[0, 1, 1, 0],
                          attention_bias=True, tie_word_embeddings=False)
        interop.one_model(lf, tmp, "smollm3-window-on-nope", "smollm3", use_sliding_window=True, sliding_window=5)
        generate.one_model(lf, tmp, "smollm3-generate", "smollm3")
        generate.one_model(lf, tmp, "smollm3-generate-window", "smollm3", use_sliding_window=True, sliding_window=5)
        for with_adapter in (False, True):
            pretrain.full_grads(lf, tmp, d, "smollm3", with_adapter)
        hostile_rope_layers(lf, tmp, d, data)
    failures = interop.failures  # the other scripts' check is interop's (one list)
    if failures:
        print("%d failure(s)" % len(failures))
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
