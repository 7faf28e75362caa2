"""`--dtype bf16` on whole models (INTERFACE.md "Precision") against transformers +
PEFT under torch.autocast("cpu", torch.bfloat16), PyTorch's own bf16 mixed precision
on the same f32 weights.

Models: tiny random Llama (GQA, untied head), Qwen2 (q/k/v biases, one K/V head) and
GPT-2 (tied head, Conv1D), written by transformers' save_pretrained in f32 (the
builders of test_llama_interop.py). For each:

(a) `lorafast eval --dtype bf16`: its loss error against the float64 oracle must be
    at most 2x the error of transformers' loss under autocast on the same windows (the
    rule the issue sets for every bf16 path), with a floor of 2^-9 relative, the
    rounding of a single bf16 value: the loss is one number, and autocast's error on
    it can be near zero by cancellation (the same floor as test_grad_vs_torch.py);
(b) `lorafast model-grad --dtype bf16` with a PEFT adapter (B != 0): the relative
    Frobenius error of all LoRA gradients together against float64 autograd must be
    at most 2x that of float32 autograd under autocast;
(c) the same with bf16 arithmetic turned off (LORAFAST_BF16_ARITHMETIC=0, the
    fallback of CPUs without AVX512-BF16): the same bounds, and one note on stderr;
(d) `finetune --dtype bf16` writes an f32 PEFT adapter that PeftModel loads and
    evaluates as lorafast does (f64, 1e-10 as in test_llama_interop.py), whose
    training losses track the f32 run's (each step within 2^-6 relative: a few bf16
    roundings, 2^-9 each, on the loss of a step; the measured gap is printed), and
    `--resume` of a bf16 run continues in bf16 and gives the straight run's adapter
    bit for bit;
(e) `pretrain --dtype bf16` (f32 master weights, each update's passes on their bf16
    copy) tracks `pretrain --dtype f32` by the same per-step rule and saves F32
    weights.
"""

import argparse
import csv
import json
import os
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import peft  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from test_llama_interop import (T, WINDOWS, F64_REL, build, check, failures, float64_transformers,  # noqa: E402
                                load_oracle, oracle_loss, peft_targets, rel, run, windows)

BF16_FACTOR = 2.0       # x torch's autocast error on the same case
LOSS_FLOOR = 2.0 ** -9  # relative: one bf16 rounding
CURVE_REL = 2.0 ** -6   # bf16 vs f32 training loss per step, relative

def fallback_env():
    env = dict(os.environ)
    env["LORAFAST_BF16_ARITHMETIC"] = "0"
    return env


def autocast_loss(cls, d, data):
    model = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    x = windows(data)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_ids=x[:, :-1]).logits
    logits = logits.double()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)).item()


def lora_grads(model, x, amp):
    """{name: grad} of the LoRA tensors of a PeftModel, float64 or float32 under autocast."""
    model.zero_grad()
    if amp:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=x[:, :-1]).logits
        logits = logits.float()
    else:
        with float64_transformers():
            logits = model(input_ids=x[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
    loss.backward()
    return {n.replace(".default", ""): p.grad.double() for n, p in model.named_parameters() if "lora_" in n}


def joint_rel(got, ref):
    num = sum(float(torch.sum((got[k].double() - ref[k]) ** 2)) for k in ref)
    den = sum(float(torch.sum(ref[k] ** 2)) for k in ref)
    return (num / den) ** 0.5


def lf_loss(lf, d, data_path, dtype, adapter=None, env=None):
    args = ["eval", "--model", d, "--data", data_path, "--seq-len", T, "--dtype", dtype, "--json"]
    if adapter:
        args += ["--adapter", adapter]
    p = run(lf, *args, env=env)
    return json.loads(p.stdout)["loss"], p.stderr


def one_model(lf, tmp, name, kind, **overrides):
    d = os.path.join(tmp, name)
    model, cls = build(kind, seed=len(name) + 11, **overrides)
    model.save_pretrained(d)
    data = bytes(np.random.default_rng(len(name)).integers(0, 256, WINDOWS * T + 1, dtype=np.uint8))
    data_path = os.path.join(tmp, name + ".bin")
    with open(data_path, "wb") as f:
        f.write(data)

    # (a) evaluation.
    want = oracle_loss(load_oracle(cls, d), data)
    amp_err = abs(autocast_loss(cls, d, data) - want)
    bound = max(BF16_FACTOR * amp_err, LOSS_FLOOR * want)
    for path, env in (("bf16", None), ("fallback", fallback_env())):
        got, stderr = lf_loss(lf, d, data_path, "bf16", env=env)
        err = abs(got - want)
        check(err <= bound, "%s (a) eval bf16 [%s]: err %.2e vs autocast err %.2e (bound %.2e)"
              % (name, path, err, amp_err, bound))
        if env is not None:
            check(stderr.count("lorafast: note:") == 1 and "LORAFAST_BF16_ARITHMETIC=0" in stderr,
                  "%s (c) the fallback says so once on stderr: %r" % (name, stderr))

    # (b) LoRA gradients with a PEFT adapter.
    torch.manual_seed(1)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=peft_targets(kind), init_lora_weights=False,
                          lora_dropout=0.0)
    pm = peft.get_peft_model(load_oracle(cls, d), cfg).eval()
    adir = os.path.join(tmp, name + "-peft")
    pm.save_pretrained(adir)
    x = windows(data)
    ref = lora_grads(pm, x, amp=False)
    pm32 = peft.PeftModel.from_pretrained(cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager"),
                                          adir, is_trainable=True).eval()
    amp = lora_grads(pm32, x, amp=True)
    amp_grad_err = joint_rel(amp, ref)
    tok_path = os.path.join(tmp, name + ".tokens")
    with open(tok_path, "w") as f:
        for row in x.tolist():
            f.write(" ".join(map(str, row)) + "\n")
    for path, env in (("bf16", None), ("fallback", fallback_env())):
        out = os.path.join(tmp, "%s-grads-%s.safetensors" % (name, path))
        run(lf, "model-grad", "--model", d, "--adapter", adir, "--tokens", tok_path, "--out", out, "--dtype", "bf16",
            env=env)
        ours = load_file(out)
        missing = sorted(set(ref) - set(ours))
        err = joint_rel(ours, ref) if not missing else float("inf")
        check(err <= BF16_FACTOR * amp_grad_err, "%s (b) %d LoRA gradients bf16 [%s]: err %.2e vs autocast err %.2e%s"
              % (name, len(ref), path, err, amp_grad_err, " missing %s" % missing if missing else ""))
    return d, data_path, cls


def train_log(out):
    with open(os.path.join(out, "train_log.csv")) as f:
        return [float(r["loss"]) for r in csv.DictReader(f) if r.get("loss")]


def finetune(lf, tmp, name, d, data_path, cls, kind):
    common = ["--model", d, "--data", data_path, "--seq-len", T, "--batch", 2, "--rank", 4, "--alpha", 8,
              "--lr", 1e-2, "--eval-every", 0, "--targets", *(["attn.c_attn", "mlp.c_fc"] if kind == "gpt2"
                                                               else ["all-linear"])]
    runs = {}
    for dtype in ("f32", "bf16"):
        out = os.path.join(tmp, "%s-ft-%s" % (name, dtype))
        run(lf, "finetune", *common, "--steps", 12, "--dtype", dtype, "--out", out)
        runs[dtype] = out
    f32, bf16 = train_log(runs["f32"]), train_log(runs["bf16"])
    gap = max(abs(a - b) / abs(a) for a, b in zip(f32, bf16)) if f32 and len(f32) == len(bf16) else float("inf")
    check(gap <= CURVE_REL and f32[-1] < f32[0] and bf16[-1] < bf16[0],
          "%s (d) bf16 training losses track f32 over %d steps: worst relative gap %.2e (%.4f -> %.4f vs %.4f -> %.4f)"
          % (name, len(f32), gap, f32[0], f32[-1], bf16[0], bf16[-1]))
    adapter = load_file(os.path.join(runs["bf16"], "adapter_model.safetensors"))
    check(all(t.dtype == torch.float32 for t in adapter.values()), "%s (d) the bf16 run's adapter is f32" % name)
    ours, _ = lf_loss(lf, d, data_path, "f64", adapter=runs["bf16"])
    theirs = oracle_loss(peft.PeftModel.from_pretrained(load_oracle(cls, d), runs["bf16"]).eval(), bytes(open(data_path, "rb").read()))
    check(rel(ours, theirs) <= F64_REL, "%s (d) the bf16 run's adapter in PEFT: %.15g vs lorafast %.15g"
          % (name, theirs, ours))
    # --resume continues in bf16 (no --dtype given), bit for bit.
    split = os.path.join(tmp, name + "-ft-split")
    run(lf, "finetune", *common, "--steps", 12, "--dtype", "bf16", "--out", split, "--stop-after", 5)
    run(lf, "finetune", *common, "--steps", 12, "--out", split, "--resume")
    a = load_file(os.path.join(split, "adapter_model.safetensors"))
    b = load_file(os.path.join(runs["bf16"], "adapter_model.safetensors"))
    check(a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a),
          "%s (d) bf16 --stop-after 5 then --resume equals the straight run bit for bit" % name)
    p = run(lf, "finetune", *common, "--steps", 12, "--dtype", "f32", "--out", split, "--resume", expect=3)
    check("--dtype bf16" in p.stderr, "%s (d) resuming a bf16 run with --dtype f32 is refused: %r" % (name, p.stderr))


def pretrain(lf, tmp):
    data = os.path.join(tmp, "pretrain.txt")
    with open(data, "w") as f:
        f.write("the quick brown fox jumps over the lazy dog. " * 40)
    logs = {}
    for dtype in ("f32", "bf16"):
        out = os.path.join(tmp, "pretrain-" + dtype)
        run(lf, "pretrain", "--data", data, "--out", out, "--model-type", "llama", "--steps", 10, "--seq-len", 32,
            "--batch", 2, "--dtype", dtype, "--eval-every", 0)
        logs[dtype] = train_log(out)
    f32, bf16 = logs["f32"], logs["bf16"]
    gap = max(abs(a - b) / abs(a) for a, b in zip(f32, bf16)) if f32 and len(f32) == len(bf16) else float("inf")
    check(gap <= CURVE_REL and bf16[-1] < bf16[0],
          "(e) pretrain bf16 tracks f32 over %d steps: worst relative gap %.2e (%.4f -> %.4f)"
          % (len(f32), gap, bf16[0], bf16[-1]))
    weights = load_file(os.path.join(tmp, "pretrain-bf16", "model.safetensors"))
    check(all(t.dtype == torch.float32 for t in weights.values()), "(e) pretrain bf16 saves F32 weights")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorafast", required=True)
    lf = ap.parse_args().lorafast
    with tempfile.TemporaryDirectory() as tmp:
        d, data_path, cls = one_model(lf, tmp, "llama-gqa-untied", "llama", tie_word_embeddings=False)
        finetune(lf, tmp, "llama-gqa-untied", d, data_path, cls, "llama")
        one_model(lf, tmp, "qwen2-bias", "qwen2", num_key_value_heads=1)
        d, data_path, cls = one_model(lf, tmp, "gpt2", "gpt2")
        finetune(lf, tmp, "gpt2", d, data_path, cls, "gpt2")
        pretrain(lf, tmp)
    if failures:
        print("%d failure(s)" % len(failures))
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
