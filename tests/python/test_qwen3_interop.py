"""Qwen3 (per-head q/k RMSNorm before RoPE, head_dim apart from hidden / heads)
against transformers' Qwen3ForCausalLM and PEFT, through the checks of
test_llama_interop.py and test_generate_vs_hf.py on tiny random models written by
save_pretrained:

(a) `lorafast eval` equals transformers' loss (f64 and f32);
(b) a PEFT adapter (all-linear, B != 0) gives PEFT's loss;
(c) an adapter trained by `lorafast finetune` gives lorafast's loss in PeftModel;
(d) `lorafast model-grad` LoRA gradients equal autograd through transformers + PEFT;
(e) `lorafast generate --greedy` (KV cache) gives transformers' generate ids, with
    and without an adapter;
(f) `lorafast model-grad --full` gradients of every base weight (q_norm and k_norm
    included) and of an adapter equal autograd (test_llama_pretrain.py's check);
(g) `lorafast pretrain --model-type qwen3` writes the config.json Qwen3Config
    writes (head_dim = width / heads, which Qwen3Config must be told: its default is
    128) and a model transformers loads with the same loss, the loss falling
    (test_llama_pretrain.py's check);
and a q_norm / k_norm weight of the wrong shape, or a missing one, exits 3 naming
the file and the tensor.

Cases: GQA untied, tied with q/k/v/o biases (attention_bias), one K/V head.
Tolerance model: as the two scripts whose checks run here (their docstrings): f64
loss and gradients <= 1e-10 relative (the same function in IEEE double), f32 loss
<= 1e-5 relative, greedy ids equal (f32 paths only where the f64 top-2 margin is
>= 1e-3).
"""

import argparse
import os
import sys
import tempfile

import torch
import transformers
from safetensors.torch import load_file, save_file

import test_generate_vs_hf as generate
from hf_random import randomize
import test_llama_interop as interop
import test_llama_pretrain as pretrain

llama_family_build = interop.build


def build(kind, seed, **overrides):
    """test_llama_interop.build, plus kind "qwen3": random norms (q_norm, k_norm too), biases and weights."""
    if kind != "qwen3":
        return llama_family_build(kind, seed, **overrides)
    torch.manual_seed(seed)
    config = dict(vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=12, max_position_embeddings=64, rms_norm_eps=1e-5)
    config.update(overrides)
    return randomize(transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**config))), transformers.Qwen3ForCausalLM


# Both scripts' one_model() build their models through this module-level name;
# test_llama_pretrain.full_grads() loads the oracle by its CLASSES.
interop.build = generate.build = build
pretrain.CLASSES["qwen3"] = (transformers.Qwen3Config, transformers.Qwen3ForCausalLM)


def hostile_norms(lf, tmp, model_dir, data_path):
    import shutil
    ev = ["eval", "--data", data_path, "--seq-len", interop.T, "--json", "--model"]
    for what, edit in (("wrong-shape", lambda t, k: t[k][1:].contiguous()), ("missing", None)):
        d = os.path.join(tmp, "qwen3-" + what)
        shutil.copytree(model_dir, d)
        path = os.path.join(d, "model.safetensors")
        tensors = load_file(path)
        key = "model.layers.1.self_attn.k_norm.weight"
        if edit is None:
            del tensors[key]
        else:
            tensors[key] = edit(tensors, key)
        save_file(tensors, path, metadata={"format": "pt"})
        interop.expect_error(lf, ev + [d], 3, key, "qwen3 %s k_norm names the tensor" % what)
        p = interop.run(lf, *ev, d, expect=3)
        interop.check(path in p.stderr or d in p.stderr, "qwen3 %s k_norm names the file: %s" % (what, p.stderr.strip()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorafast", required=True)
    lf = ap.parse_args().lorafast
    print("transformers %s, torch %s" % (transformers.__version__, torch.__version__))
    with tempfile.TemporaryDirectory() as tmp:
        d, data = interop.one_model(lf, tmp, "qwen3-gqa-untied", "qwen3", tie_word_embeddings=False)
        interop.one_model(lf, tmp, "qwen3-tied-bias", "qwen3", tie_word_embeddings=True, attention_bias=True)
        interop.one_model(lf, tmp, "qwen3-one-kv-head", "qwen3", num_key_value_heads=1, head_dim=8)
        generate.one_model(lf, tmp, "qwen3-generate", "qwen3")
        generate.one_model(lf, tmp, "qwen3-generate-bias", "qwen3", attention_bias=True, tie_word_embeddings=True)
        for with_adapter in (False, True):
            pretrain.full_grads(lf, tmp, d, "qwen3", with_adapter)
        text = os.path.join(tmp, "text.txt")
        with open(text, "wb") as f:
            f.write(pretrain.TEXT)
        pretrain.SIZES["head_dim"] = 32 // 4  # pretrain_args' --width / --heads
        for tied in (False, True):
            pretrain.full_grads(lf, tmp, pretrain.pretrained_model(lf, tmp, text, "qwen3", tied, "f64"), "qwen3", False)
        hostile_norms(lf, tmp, d, data)
    failures = interop.failures  # the other scripts' check is interop's (one list)
    if failures:
        print("%d failure(s)" % len(failures))
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
