"""`lorafast model-grad --full` (gradient of every GPT-2 base weight) against PyTorch.

Each case writes a tiny random GPT-2 model directory (with or without the
"transformer." prefix, stored as F64, F32 or F16), optionally a PEFT adapter
directory, and a token file; runs the hidden `model-grad --full` command and
compares the loss and the gradient of every base tensor, written under its GPT-2
name in the model file's spelling (and of every adapter tensor, if any) with torch
autograd of the same model (gptcase.torch_loss_and_grads, base_grads=True) on the
very values the program read. wte's gradient covers both its uses: the token
embedding and the tied LM head.

Tolerance model (DESIGN.md rule 5, as in test_gpt_vs_torch.py), per tensor:
- `--dtype f64`: relative Frobenius error of each gradient tensor, and the loss's
  relative error, <= 1e-10. Both sides compute the same function in IEEE double
  and differ only in summation order (BLAS blocking, tiles, threads, the order of
  the sums over token rows), i.e. a modest multiple of 1e-16 times the conditioning
  of the sums; a wrong or missing term gives O(1e-3) or worse. Stored F16/F32 models
  are compared on their stored values, so storage rounding is not counted.
- `--dtype f32`: the yardstick is naive torch float32 autograd on the same case
  against the same float64 reference, tensor by tensor; the program must satisfy
  err <= max(50 * err_torch_f32, 1e-5) (FlashAttention's rule: an optimized f32
  kernel may reorder sums but stays within a small multiple of the naive f32 error;
  the 1e-5 floor, ~100 f32 ulps, covers tensors whose naive error happens to be ~0).
"""

import json
import os
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gptcase  # noqa: E402
import lfcase  # noqa: E402
from lfcase import check  # noqa: E402

harness = lfcase.Harness(__doc__)

F64_BOUND = 1e-10
F32_FACTOR = 50.0
F32_FLOOR = 1e-5
STORE = {"f64": np.float64, "f32": np.float32, "f16": np.float16}
ALL = gptcase.TARGETS


def C(name, layers, heads, D, V, P, N, T, prefixed=True, dtype="f64", store="f64", threads=None, lora=None):
    """`lora`: None (base model only) or (R, alpha, targets, qkv)."""
    return dict(name=name, layers=layers, heads=heads, D=D, V=V, P=P, N=N, T=T, prefixed=prefixed, dtype=dtype,
                store=store, threads=threads, lora=lora)


CASES = [
    C("prefixed/L2/D8/H2/V11/T5/N2", 2, 2, 8, 11, 9, 2, 5),
    C("bare/L1/D6/H3/V7/T1/N3", 1, 3, 6, 7, 4, 3, 1, prefixed=False, threads=1),
    C("bare/L3/D5/H1/V3/T7/N2", 3, 1, 5, 3, 8, 2, 7, prefixed=False),
    C("prefixed/T70/D12/H3/V13/N2 (crosses a 64-row tile)", 1, 3, 12, 13, 80, 2, 70),
    C("prefixed/with-adapter/all-qv", 2, 2, 8, 11, 9, 2, 6, lora=(2, 3.0, ALL, "qv")),
    C("bare/with-adapter/c_fc", 1, 2, 8, 11, 9, 3, 4, prefixed=False, lora=(3, 6.0, ("mlp.c_fc",), "qkv")),
    C("f16-stored/prefixed", 2, 2, 8, 11, 9, 2, 6, store="f16"),
    C("f32/prefixed", 2, 2, 16, 13, 40, 2, 33, dtype="f32", store="f32"),
    C("f32/bare/with-adapter", 2, 4, 16, 13, 40, 3, 20, prefixed=False, dtype="f32", store="f32", threads=2,
      lora=(2, 4.0, ALL, "qkv")),
]


def write_case(c, d, seed):
    rng = np.random.default_rng(seed)
    config, model = gptcase.random_model(rng, c["layers"], c["heads"], c["D"], c["V"], c["P"])
    adapter = {}
    if c["lora"]:
        R, alpha, targets, qkv = c["lora"]
        adapter = gptcase.random_adapter(rng, c["layers"], c["D"], R, targets, qkv)
    tokens = rng.integers(0, c["V"], (c["N"], c["T"] + 1))
    store = STORE[c["store"]]
    compute = np.float32 if c["dtype"] == "f32" else np.float64
    model = {k: np.asarray(v, dtype=store) for k, v in model.items()}
    paths = {k: os.path.join(d, k) for k in ("model", "adapter", "tokens.txt", "out")}
    gptcase.write_model_dir(paths["model"], config, model, c["prefixed"], store)
    if c["lora"]:
        R, alpha, targets, qkv = c["lora"]
        gptcase.write_adapter_dir(paths["adapter"], adapter, R, alpha, targets, qkv=qkv, dtype=store)
        adapter = {k: np.asarray(v, dtype=store) for k, v in adapter.items()}
    gptcase.write_tokens(paths["tokens.txt"], tokens)
    os.mkdir(paths["out"])
    seen_model = {k: v.astype(compute) for k, v in model.items()}
    seen_adapter = {k: v.astype(compute) for k, v in adapter.items()}
    return config, seen_model, seen_adapter, tokens, paths


def make_test(idx, c):
    def fn(binary):
        with tempfile.TemporaryDirectory() as d:
            config, model, adapter, tokens, paths = write_case(c, d, 3000 + idx)
            out = os.path.join(paths["out"], "grads.safetensors")
            args = ["model-grad", "--full", "--model", paths["model"], "--tokens", paths["tokens.txt"], "--out", out,
                    "--dtype", c["dtype"], "--json"]
            if c["lora"]:
                args += ["--adapter", paths["adapter"]]
            if c["threads"]:
                args += ["--threads", c["threads"]]
            rc, stdout, stderr = lfcase.run_lorafast(binary, args)
            check(rc == 0, "exit %d: %s" % (rc, stderr.strip()[:500]))
            got = lfcase.read_safetensors(out)
            dtypes = set(lfcase.file_dtypes(out).values())
        oracle = dict(base_grads=True)
        if c["lora"]:
            R, alpha, _, qkv = c["lora"]
            oracle.update(R=R, alpha=alpha, qkv=qkv)
        ref = gptcase.torch_loss_and_grads(config, model, adapter, tokens, **oracle)
        naive = None
        if c["dtype"] == "f32":
            naive = gptcase.torch_loss_and_grads(config, model, adapter, tokens, dtype=torch.float32, **oracle)
        prefix = "transformer." if c["prefixed"] else ""
        out_name = {**{prefix + n: n for n in model}, **{n: n for n in adapter}}
        check(dtypes == {"F64" if c["dtype"] == "f64" else "F32"}, "output dtypes %s" % dtypes)
        check(sorted(got) == sorted(list(out_name) + ["loss"]), "output tensors %s" % sorted(got))
        worst, worst_name = 0.0, ""
        for written, name in out_name.items():
            want = model.get(name, adapter.get(name))
            check(got[written].shape == want.shape, "%s shape %s, want %s" % (written, got[written].shape, want.shape))
            err = lfcase.rel_error(got[written], ref[name])
            bound = F64_BOUND
            if naive is not None:
                bound = max(F32_FACTOR * lfcase.rel_error(naive[name], ref[name]), F32_FLOOR)
            check(err <= bound, "%s: gradient rel err %.3e > %.3e" % (written, err, bound))
            if err / bound > worst:
                worst, worst_name = err / bound, written
        loss = float(got["loss"].ravel()[0])
        loss_err = abs(loss - ref["loss"]) / ref["loss"]
        loss_bound = F64_BOUND
        if naive is not None:
            loss_bound = max(F32_FACTOR * abs(naive["loss"] - ref["loss"]) / ref["loss"], F32_FLOOR)
        check(loss_err <= loss_bound, "loss %r vs torch %r: rel %.3e > %.3e" % (loss, ref["loss"], loss_err, loss_bound))
        doc = json.loads(stdout)
        check(doc["tokens"] == c["N"] * c["T"], "json tokens %r" % doc["tokens"])
        return "%d tensors, worst err/bound %.2e (%s), loss err %.2e" % (len(out_name), worst, worst_name, loss_err)
    return fn


for i, case in enumerate(CASES):
    harness.add("model-grad-full/" + case["name"], make_test(i, case))


@harness.test
def error_adapter_required_without_full(binary):
    with tempfile.TemporaryDirectory() as d:
        _, _, _, _, paths = write_case(CASES[0], d, 7)
        out = os.path.join(paths["out"], "grads.safetensors")
        rc, _, stderr = lfcase.run_lorafast(binary, [
            "model-grad", "--model", paths["model"], "--tokens", paths["tokens.txt"], "--out", out])
        check(rc == 2, "exit %d (want 2): %s" % (rc, stderr.strip()[:300]))
        check("--adapter is required without --full" in stderr, "stderr %r" % stderr)
        check(os.listdir(paths["out"]) == [], "output dir holds %s" % os.listdir(paths["out"]))


if __name__ == "__main__":
    sys.exit(harness.main())
