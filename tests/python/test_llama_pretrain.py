"""Full-parameter training of Llama-family models against transformers:

(e) `lorafast pretrain --model-type llama|qwen2|mistral` writes a model directory
    whose config.json is the one transformers' LlamaConfig / Qwen2Config /
    MistralConfig save_pretrained writes for the same sizes (every key and value,
    transformers_version aside), whose model.safetensors loads with
    AutoModelForCausalLM.from_pretrained with no missing or unexpected keys, and on
    which transformers' loss equals `lorafast eval`'s; `--steps 0` writes the
    initialisation (norms 1, biases 0, matrices with transformers' initializer_range
    deviation); `--init DIR` trains such a directory further;
    Bad pretrain flags exit 2 (3 for a missing --init directory) with one
    `lorafast: error:` line and nothing written;
(f) `lorafast model-grad --full` gradients of every base tensor (and of a PEFT
    adapter's, alongside) equal torch autograd through transformers (+ PEFT).

Tolerance model (DESIGN.md rule 5), the bounds of test_llama_interop.py:
- f64 loss and gradients: relative error <= 1e-10 (per tensor, Frobenius): the
  same function in IEEE double, differing only in summation order (~1e-14).
- f32 loss vs the f64 oracle on the same (f32) weights: <= 1e-5 relative.
- init deviation: the sample deviation of n >= 1536 N(0, s^2) draws is within
  s * 5 / sqrt(2n) <= 0.09 s of s (5 standard errors); we allow 0.1 s.
"""

import argparse
import json
import math
import os
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import peft  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import test_llama_interop as interop  # noqa: E402
from test_llama_interop import check, rel, run, T  # noqa: E402

CLASSES = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
           "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
           "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM)}
SIZES = dict(vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=T)
TEXT = b"all the world's a stage, and all the men and women merely players. " * 12


def pretrain_args(kind, out, data, steps, dtype, tied, theta=None):
    args = ["pretrain", "--model-type", kind, "--data", data, "--out", out, "--steps", steps, "--layers", 2,
            "--heads", 4, "--kv-heads", 2, "--width", 32, "--intermediate", 48, "--seq-len", T, "--batch", 2,
            "--lr", 1e-2, "--warmup", 1, "--eval-every", 0, "--dtype", dtype, "--threads", 2]
    return args + (["--tie-embeddings"] if tied else []) + (["--rope-theta", theta] if theta else [])


def transformers_config_json(kind, tied, dtype, theta=None):
    """config.json as transformers writes it for these sizes, plus a saved model's architectures and dtype."""
    config_cls, model_cls = CLASSES[kind]
    extra = {"sliding_window": None} if kind == "mistral" else {}
    if theta:
        extra["rope_parameters"] = {"rope_type": "default", "rope_theta": float(theta)}
    c = config_cls(**SIZES, tie_word_embeddings=tied, **extra)
    with tempfile.TemporaryDirectory() as d:
        c.save_pretrained(d)
        with open(os.path.join(d, "config.json")) as f:
            j = json.load(f)
    del j["transformers_version"]
    j["architectures"] = [model_cls.__name__]
    j["dtype"] = dtype
    return j


def pretrained_model(lf, tmp, data, kind, tied, dtype, theta=None):
    out = os.path.join(tmp, "%s-%s-%s" % (kind, "tied" if tied else "untied", dtype))
    run(lf, *pretrain_args(kind, out, data, 4, dtype, tied, theta))
    name = os.path.basename(out)
    with open(os.path.join(out, "config.json")) as f:
        ours = json.load(f)
    want = transformers_config_json(kind, tied, "float64" if dtype == "f64" else "float32", theta)
    diff = sorted(k for k in set(ours) | set(want) if ours.get(k, "absent") != want.get(k, "absent"))
    check(not diff, "%s (e) config.json as transformers writes it; differing keys %s" % (name, diff))
    model, info = transformers.AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    missing = [k for k in info["missing_keys"] if not (tied and k == "lm_head.weight")]
    check(type(model) is CLASSES[kind][1] and not missing and not info["unexpected_keys"]
          and not info["mismatched_keys"], "%s (e) from_pretrained: %s, %s" % (name, type(model).__name__, info))
    oracle = interop.load_oracle(CLASSES[kind][1], out)
    want_loss = interop.oracle_loss(oracle, TEXT)
    got = interop.lf_eval(lf, out, data, dtype)
    bound = interop.F64_REL if dtype == "f64" else interop.F32_REL
    check(rel(got, want_loss) <= bound, "%s (e) eval %.15g vs transformers %.15g (rel %.1e)"
          % (name, got, want_loss, rel(got, want_loss)))
    with open(os.path.join(out, "train_log.csv")) as f:
        losses = [float(line.split(",")[1]) for line in f.read().splitlines()[1:]]
    # initializer_range 0.02 gives logits ~0: the first loss is log(256) within 0.1.
    check(len(losses) == 4 and abs(losses[0] - math.log(256)) < 0.1 and losses[-1] < losses[0],
          "%s (e) pretrain losses %s" % (name, losses))
    return out


def initialisation(lf, tmp, data):
    out = os.path.join(tmp, "init")
    run(lf, *pretrain_args("qwen2", out, data, 0, "f64", False))
    ours = load_file(os.path.join(out, "model.safetensors"))
    theirs = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.from_pretrained(out)).state_dict()
    check(sorted(ours) == sorted(theirs), "(e) --steps 0 tensors are transformers' names")
    worst, wrong = 0.0, []
    for name, t in ours.items():
        if t.shape != theirs[name].shape:
            wrong.append(name + " shape")
        elif name.endswith(".bias") and not bool((t == 0).all()):
            wrong.append(name + " not 0")
        elif t.dim() == 1 and not name.endswith(".bias") and not bool((t == 1).all()):
            wrong.append(name + " not 1")
        elif t.dim() == 2:
            worst = max(worst, abs(t.std().item() / 0.02 - 1))
    check(not wrong and worst <= 0.1, "(e) init: shapes, biases 0, norms 1 (wrong: %s); matrices ~ N(0, 0.02^2): "
          "worst deviation off by %.3f" % (wrong, worst))
    again = os.path.join(tmp, "init-further")
    run(lf, "pretrain", "--init", out, "--data", data, "--out", again, "--steps", 2, "--seq-len", T, "--batch", 2,
        "--eval-every", 0, "--dtype", "f64", "--threads", 2)
    further = load_file(os.path.join(again, "model.safetensors"))
    moved = all(not torch.equal(further[k], ours[k]) for k in ours if k.endswith("proj.weight"))
    check(moved and sorted(further) == sorted(ours), "(e) --init trains the directory's model further")


def bad_flags(lf, tmp, data):
    out = os.path.join(tmp, "never")
    base = ["pretrain", "--data", data, "--out", out]
    interop.expect_error(lf, base + ["--model-type", "llama", "--heads", 4, "--kv-heads", 3], 2,
                         "--kv-heads 3 does not divide --heads 4", "pretrain --kv-heads not dividing --heads")
    interop.expect_error(lf, base + ["--kv-heads", 2], 2, "Llama-family --model-type", "pretrain gpt2 --kv-heads")
    interop.expect_error(lf, base + ["--rope-theta", 500], 2, "Llama-family --model-type", "pretrain gpt2 --rope-theta")
    interop.expect_error(lf, base + ["--init", os.path.join(tmp, "nowhere")], 3, "nowhere/config.json",
                         "pretrain --init of a missing directory")
    interop.expect_error(lf, base + ["--init", tmp, "--layers", 3], 2, "--init excludes --layers",
                         "pretrain --init with a size flag")
    check(not os.path.exists(out), "failed pretrain runs wrote nothing")


def full_grads(lf, tmp, model_dir, kind, with_adapter):
    cls = CLASSES[kind][1]
    name = os.path.basename(model_dir) + ("+peft" if with_adapter else "")
    model = interop.load_oracle(cls, model_dir)
    args = ["model-grad", "--model", model_dir, "--full", "--dtype", "f64"]
    if with_adapter:
        torch.manual_seed(3)
        model = peft.get_peft_model(model, peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "down_proj"],
                                                           init_lora_weights=False, lora_dropout=0.0))
        for p in model.parameters():
            p.requires_grad_(True)  # the base weights too
        adir = os.path.join(tmp, name + "-adapter")
        model.save_pretrained(adir)
        args += ["--adapter", adir]
    x = interop.windows(TEXT[: 2 * T + 1])
    tok_path = os.path.join(tmp, name + ".tokens")
    with open(tok_path, "w") as f:
        f.write("".join(" ".join(map(str, row)) + "\n" for row in x.tolist()))
    grads_path = os.path.join(tmp, name + "-grads.safetensors")
    run(lf, *args, "--tokens", tok_path, "--out", grads_path)
    ours = load_file(grads_path)
    with interop.float64_transformers():
        logits = model(input_ids=x[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
    loss.backward()
    check(rel(ours["loss"].item(), loss.item()) <= interop.F64_REL, "%s (f) loss" % name)
    worst, count = 0.0, 0
    for pname, p in model.named_parameters():
        key = pname.replace(".default", "").replace("base_model.model.", "", 0 if "lora_" in pname else 1)
        key = key.replace(".base_layer", "")
        if key not in ours:
            check(False, "%s (f) model-grad lacks %s" % (name, key))
            continue
        g = p.grad.double()
        worst = max(worst, (torch.linalg.norm(ours[key] - g) / torch.linalg.norm(g)).item())
        count += 1
    check(count > 0 and worst <= interop.GRAD_REL and len(ours) == count + 1,
          "%s (f) %d gradients vs autograd (of %d written): worst rel %.1e" % (name, count, len(ours) - 1, worst))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorafast", required=True)
    lf = ap.parse_args().lorafast
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.txt")
        with open(data, "wb") as f:
            f.write(TEXT)
        llama = pretrained_model(lf, tmp, data, "llama", False, "f64")
        qwen2 = pretrained_model(lf, tmp, data, "qwen2", True, "f64", theta=5000)
        pretrained_model(lf, tmp, data, "mistral", False, "f32")
        initialisation(lf, tmp, data)
        bad_flags(lf, tmp, data)
        full_grads(lf, tmp, llama, "llama", False)
        full_grads(lf, tmp, qwen2, "qwen2", False)
        full_grads(lf, tmp, llama, "llama", True)
    if interop.failures:
        print("%d failure(s)" % len(interop.failures))
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
