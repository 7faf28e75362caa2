"""Gemma 3 (gemma3_text) against transformers' Gemma3ForCausalLM and PEFT, through the
checks of test_llama_interop.py, test_generate_vs_hf.py and test_llama_pretrain.py on
tiny random models written by save_pretrained: 4 layers mixing sliding (window 5,
shorter than the T = 16 tokens of a window) and full attention, query_pre_attn_scalar
apart from head_dim, final_logit_softcapping, linear RoPE scaling on the full layers
and another base on the sliding ones, (1 + w) RMSNorms (random w), the four norms of
a block, q/k norms, GeGLU, the sqrt(hidden) embedding scale:

(a) `lorafast eval` equals transformers' loss (f64 and f32);
(b) a PEFT adapter (all-linear, B != 0) gives PEFT's loss;
(c) an adapter trained by `lorafast finetune` gives lorafast's loss in PeftModel;
(d) `lorafast model-grad` LoRA gradients equal autograd through transformers + PEFT;
(e) `lorafast generate --greedy` (KV cache) gives transformers' generate ids (f64 and
    f32), with and without an adapter;
(f) `lorafast model-grad --full` gradients of every base weight (all four norms,
    q/k norms, the scaled tied embedding) and of an adapter equal autograd;
(g) a bf16 checkpoint evaluates (f64, f32 and --dtype bf16) as transformers does on
    the same bf16 weights upcast to float64, and `finetune --dtype bf16` trains on it
    (finite, falling loss);
(h) `lorafast merge --dtype f64` of the PEFT adapter: transformers' loss on the merged
    model equals PEFT's on the unmerged pair;
and refusals: attn_logit_softcapping set, and model_type "gemma3" (the multimodal
config), each exit 3 with one line naming the file and the field.

Cases: transformers 5's config (rope_parameters per layer type, layer_types), tied;
the transformers 4 spelling of a real Gemma 3 config (rope_theta + rope_scaling
linear factor 8, rope_local_base_freq, sliding_window_pattern, no layer_types),
untied, with attention_bias.

The f64 oracle: test_llama_interop's float64_transformers() makes torch.float32 mean
float64, but Gemma3RMSNorm upcasts with `.float()`, which it cannot reach, and the
rotary tables of Gemma3RotaryEmbedding are per layer type (not `inv_freq`, which
load_oracle recomputes). So under that context only, the norm's forward is its own
formula with `.to(torch.float32)` (same operations, same order), and the rotary
module is rebuilt in float64. Outside the context transformers' code runs as it is
(the f32 generation oracle).

Tolerance model: as the scripts whose checks run here (their docstrings): f64 loss
and gradients <= 1e-10 relative (the same function in IEEE double, differing only in
summation order), f32 loss <= 1e-5 relative (~100 f32 ulps), greedy ids equal (f32
paths only where the f64 top-2 margin is >= 1e-3); bf16 weights are exact f32/f64
values, so the f64 and f32 rules apply, and --dtype bf16 (bf16 products, f32 sums)
gets 2^-6 relative, test_bf16_models.py's bound on a bf16 run's loss (a few bf16
roundings of 2^-9 each).
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile

import numpy as np
import peft
import torch
import transformers
from transformers.models.gemma3 import modeling_gemma3

import test_generate_vs_hf as generate
from hf_random import randomize
import test_llama_interop as interop
import test_llama_pretrain as pretrain

BF16_REL = 2.0 ** -6  # test_bf16_models.py's bound on a bf16 run's loss: a few bf16 roundings (2^-9 each)
llama_family_build = interop.build
llama_family_oracle = interop.load_oracle
float64_torch = interop.float64_transformers  # inside, torch.float32 and torch.float mean float64

CONFIG = dict(vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=2, head_dim=12, max_position_embeddings=64, rms_norm_eps=1e-6,
              sliding_window=5, query_pre_attn_scalar=20, final_logit_softcapping=10.0,
              layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
              rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                               "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})


def build(kind, seed, **overrides):
    """test_llama_interop.build, plus kind "gemma3": every weight random (hf_random), the embedding
    divided by sqrt(hidden) as in real Gemma checkpoints, whose embeddings are O(1) only after
    the model's sqrt(hidden) scale (unscaled N(0, 1) rows make one token win every greedy step)."""
    if kind != "gemma3":
        return llama_family_build(kind, seed, **overrides)
    torch.manual_seed(seed)
    config = dict(CONFIG, **overrides)
    model = randomize(transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(**config)))
    with torch.no_grad():
        model.model.embed_tokens.weight /= config["hidden_size"] ** 0.5
    return model, transformers.Gemma3ForCausalLM


def rms_norm_forward(self, x):  # Gemma3RMSNorm.forward with .to(torch.float32) for .float()
    output = self._norm(x.to(torch.float32))
    output = output * (1.0 + self.weight.to(torch.float32))
    return output.type_as(x)


@contextlib.contextmanager
def float64_gemma3():
    saved = modeling_gemma3.Gemma3RMSNorm.forward
    modeling_gemma3.Gemma3RMSNorm.forward = rms_norm_forward
    try:
        with float64_torch():
            yield
    finally:
        modeling_gemma3.Gemma3RMSNorm.forward = saved


def load_oracle(cls, directory, attn="eager"):
    model = llama_family_oracle(cls, directory, attn)
    for module in model.modules():
        if isinstance(module, modeling_gemma3.Gemma3RotaryEmbedding):
            with float64_torch():
                module.__init__(module.config)
    return model


# The scripts' one_model() and full_grads() build models, load oracles and enter the
# float64 context through these module-level names.
interop.build = generate.build = build
interop.load_oracle = generate.load_oracle = load_oracle
interop.float64_transformers = generate.float64_transformers = float64_gemma3
pretrain.CLASSES["gemma3"] = (transformers.Gemma3TextConfig, transformers.Gemma3ForCausalLM)


def transformers4_config(c):
    """The transformers 4 spelling of a Gemma 3 config.json: rope_theta with rope_scaling (linear,
    factor 8, as the 4B to 27B models have it) for the full layers, rope_local_base_freq for the
    sliding ones, and sliding_window_pattern instead of layer_types (2 here: every other layer)."""
    del c["rope_parameters"], c["layer_types"]
    c.update(rope_theta=1e6, rope_local_base_freq=1e4, rope_scaling={"rope_type": "linear", "factor": 8.0},
             sliding_window_pattern=2)


def bf16_model(lf, tmp):
    name = "gemma3-bf16"
    d = os.path.join(tmp, name)
    model, cls = build("gemma3", seed=7)
    model.to(torch.bfloat16).save_pretrained(d)
    data = bytes(np.random.default_rng(7).integers(0, 256, interop.WINDOWS * interop.T + 1, dtype=np.uint8))
    data_path = os.path.join(tmp, name + ".bin")
    with open(data_path, "wb") as f:
        f.write(data)
    want = interop.oracle_loss(load_oracle(cls, d), data)  # the bf16 values upcast exactly
    for dtype, bound in (("f64", interop.F64_REL), ("f32", interop.F32_REL), ("bf16", BF16_REL)):
        got = interop.lf_eval(lf, d, data_path, dtype)
        interop.check(interop.rel(got, want) <= bound, "%s eval %s: %.15g vs transformers on the upcast weights %.15g "
                      "(rel %.1e)" % (name, dtype, got, want, interop.rel(got, want)))
    out = os.path.join(tmp, name + "-ft")
    interop.run(lf, "finetune", "--model", d, "--data", data_path, "--out", out, "--steps", 4, "--seq-len", interop.T,
                "--batch", 2, "--rank", 4, "--lr", 3e-2, "--dtype", "bf16", "--eval-every", 0,
                "--targets", "all-linear")
    with open(os.path.join(out, "train_log.csv")) as f:
        losses = [float(row.split(",")[1]) for row in f.read().splitlines()[1:]]
    interop.check(len(losses) == 4 and all(np.isfinite(losses)) and losses[-1] < losses[0],
                  "%s finetune --dtype bf16: losses %s" % (name, ", ".join("%.4f" % l for l in losses)))


def merged(lf, tmp, model_dir, data_path, adapter):
    """`lorafast merge --dtype f64` of a PEFT adapter: transformers on the merged model gives PEFT's loss."""
    out = os.path.join(tmp, "gemma3-merged")
    interop.run(lf, "merge", "--model", model_dir, "--adapter", adapter, "--out", out, "--dtype", "f64")
    with open(data_path, "rb") as f:
        data = f.read()
    want = interop.oracle_loss(peft.PeftModel.from_pretrained(load_oracle(transformers.Gemma3ForCausalLM, model_dir),
                                                              adapter).eval(), data)
    got = interop.oracle_loss(load_oracle(transformers.Gemma3ForCausalLM, out), data)
    base = interop.oracle_loss(load_oracle(transformers.Gemma3ForCausalLM, model_dir), data)
    interop.check(interop.rel(got, want) <= interop.F64_REL and abs(base - want) > 1e-6,
                  "gemma3 merge: merged model %.15g vs PEFT %.15g (rel %.1e; base %.6g)"
                  % (got, want, interop.rel(got, want), base))


def refusals(lf, tmp, model_dir, data_path):
    import shutil
    ev = lambda d: ["eval", "--data", data_path, "--seq-len", interop.T, "--json", "--model", d]
    for name, edit, needle in (("softcap", {"attn_logit_softcapping": 50.0}, "attn_logit_softcapping"),
                               ("multimodal", {"model_type": "gemma3"}, "gemma3_text")):
        d = os.path.join(tmp, "gemma3-" + name)
        shutil.copytree(model_dir, d)
        path = os.path.join(d, "config.json")
        with open(path) as f:
            c = json.load(f)
        c.update(edit)
        with open(path, "w") as f:
            json.dump(c, f)
        interop.expect_error(lf, ev(d), 3, needle, "gemma3 %s refused naming the field" % name)
        interop.expect_error(lf, ev(d), 3, path, "gemma3 %s refused naming the file" % name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorafast", required=True)
    lf = ap.parse_args().lorafast
    print("transformers %s, torch %s" % (transformers.__version__, torch.__version__))
    with tempfile.TemporaryDirectory() as tmp:
        d, data = interop.one_model(lf, tmp, "gemma3-mixed", "gemma3")
        interop.one_model(lf, tmp, "gemma3-transformers4-untied-bias", "gemma3", config_edit=transformers4_config,
                          tie_word_embeddings=False, attention_bias=True)
        generate.one_model(lf, tmp, "gemma3-generate", "gemma3")
        for with_adapter in (False, True):
            pretrain.full_grads(lf, tmp, d, "gemma3", with_adapter)
        bf16_model(lf, tmp)
        merged(lf, tmp, d, data, os.path.join(tmp, "gemma3-mixed-peft"))
        refusals(lf, tmp, d, data)
    failures = interop.failures  # the other scripts' check is interop's (one list)
    if failures:
        print("%d failure(s)" % len(failures))
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
