"""`lorafast model-grad` (GPT-2 + PEFT adapter) against a PyTorch re-implementation.

Each case writes a tiny random GPT-2 model directory (config.json + model.safetensors,
with or without the "transformer." prefix, stored as F64, F32 or F16), a PEFT adapter
directory and a token file, runs the hidden `model-grad` command and compares the
loss and the gradient of every adapter tensor with torch autograd of the same model
(gptcase.torch_loss_and_grads) on the very values the program read.

Tolerance model (DESIGN.md rule 5, as in test_grad_vs_torch.py):
- `--dtype f64`: relative Frobenius error over all gradient tensors together, and
  the loss's relative error, <= 1e-10. Both sides compute the same function in IEEE
  double and differ only in summation order (BLAS blocking, tiles, threads), i.e.
  a modest multiple of 1e-16 times the conditioning of the sums; a wrong term gives
  O(1e-3) or worse. F16/F32-stored models are compared on their stored values, so
  storage rounding is not counted.
- `--dtype f32`: the yardstick is naive torch float32 autograd on the same case
  against the same float64 reference; the program must satisfy
  err <= max(50 * err_torch_f32, 1e-5) (FlashAttention's rule: an optimized f32
  kernel may reorder sums but stays within a small multiple of the naive f32 error;
  the 1e-5 floor, ~100 f32 ulps, covers cases where the naive error is ~0).
Error cases: exit code 3, a one-line `lorafast: error:` naming the file and tensor
or token, and no output file left behind.
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


def C(name, layers, heads, D, V, P, N, T, R, alpha, targets, qkv="qkv", rslora=False, prefixed=True,
      dtype="f64", store="f64", threads=None):
    return dict(name=name, layers=layers, heads=heads, D=D, V=V, P=P, N=N, T=T, R=R, alpha=alpha,
                targets=targets, qkv=qkv, rslora=rslora, prefixed=prefixed, dtype=dtype, store=store,
                threads=threads)


ALL = gptcase.TARGETS
CASES = [
    C("prefixed/all/L2/D8/H2/V11/T5/N2/R2", 2, 2, 8, 11, 9, 2, 5, 2, 3.0, ALL),
    C("bare/c_attn-qv+c_fc/rslora", 2, 2, 8, 11, 9, 2, 5, 3, 4.0, ("attn.c_attn", "mlp.c_fc"), qkv="qv",
      rslora=True, prefixed=False),
    C("bare/all/L1/D6/H3/V7/T1/N3/R1", 1, 3, 6, 7, 4, 3, 1, 1, 2.0, ALL, prefixed=False, threads=1),
    C("prefixed/k+mlp/L3/D4/H1/V5/T7/N1", 3, 1, 4, 5, 8, 1, 7, 2, 1.0, ("mlp.c_proj", "attn.c_attn"), qkv="k"),
    C("prefixed/all/T70/D12/H3/V13/N2 (crosses a 64-row tile)", 1, 3, 12, 13, 80, 2, 70, 4, 8.0, ALL),
    C("prefixed/c_attn/T300/N2/V13 (crosses the 512-row LM-head chunk)", 1, 2, 8, 13, 300, 2, 300, 2, 2.0,
      ("attn.c_attn",)),
    C("f16-stored/c_attn+attn.c_proj", 2, 2, 8, 11, 9, 2, 6, 2, 2.0, ("attn.c_attn", "attn.c_proj"), store="f16"),
    C("f32/all", 2, 2, 16, 13, 40, 2, 33, 3, 6.0, ALL, dtype="f32", store="f32"),
    C("f32/bare/c_attn-qv", 2, 4, 16, 13, 40, 3, 20, 2, 4.0, ("attn.c_attn",), qkv="qv", prefixed=False,
      dtype="f32", store="f32", threads=2),
]


def write_case(c, d, seed):
    rng = np.random.default_rng(seed)
    config, model = gptcase.random_model(rng, c["layers"], c["heads"], c["D"], c["V"], c["P"])
    adapter = gptcase.random_adapter(rng, c["layers"], c["D"], c["R"], c["targets"], c["qkv"])
    tokens = rng.integers(0, c["V"], (c["N"], c["T"] + 1))
    store = STORE[c["store"]]
    # What the program sees: the stored values (F16 loads as F32), then its compute dtype.
    compute = np.float32 if c["dtype"] == "f32" else np.float64
    model = {k: np.asarray(v, dtype=store) for k, v in model.items()}
    adapter = {k: np.asarray(v, dtype=store if store != np.float16 else np.float64) for k, v in adapter.items()}
    paths = {k: os.path.join(d, k) for k in ("model", "adapter", "tokens.txt", "out")}
    gptcase.write_model_dir(paths["model"], config, model, c["prefixed"], store)
    gptcase.write_adapter_dir(paths["adapter"], adapter, c["R"], c["alpha"], c["targets"], c["rslora"], c["qkv"],
                              adapter[next(iter(adapter))].dtype)
    gptcase.write_tokens(paths["tokens.txt"], tokens)
    os.mkdir(paths["out"])
    seen_model = {k: v.astype(compute) for k, v in model.items()}
    seen_adapter = {k: v.astype(compute) for k, v in adapter.items()}
    return config, seen_model, seen_adapter, tokens, paths


def make_test(idx, c):
    def fn(binary):
        with tempfile.TemporaryDirectory() as d:
            config, model, adapter, tokens, paths = write_case(c, d, 2000 + idx)
            out = os.path.join(paths["out"], "grads.safetensors")
            args = ["model-grad", "--model", paths["model"], "--adapter", paths["adapter"], "--tokens",
                    paths["tokens.txt"], "--out", out, "--dtype", c["dtype"], "--json"]
            if c["threads"]:
                args += ["--threads", c["threads"]]
            rc, stdout, stderr = lfcase.run_lorafast(binary, args)
            check(rc == 0, "exit %d: %s" % (rc, stderr.strip()[:500]))
            got = lfcase.read_safetensors(out)
            dtypes = set(lfcase.file_dtypes(out).values())
        oracle = dict(R=c["R"], alpha=c["alpha"], rslora=c["rslora"], qkv=c["qkv"])
        ref = gptcase.torch_loss_and_grads(config, model, adapter, tokens, **oracle)
        names = sorted(adapter)
        if c["dtype"] == "f64":
            bound = loss_bound = F64_BOUND
            why = "f64 bound"
        else:
            naive = gptcase.torch_loss_and_grads(config, model, adapter, tokens, dtype=torch.float32, **oracle)
            naive_err = lfcase.rel_error(lfcase.grad_vector(naive, names), lfcase.grad_vector(ref, names))
            bound = max(F32_FACTOR * naive_err, F32_FLOOR)
            loss_bound = max(F32_FACTOR * abs(naive["loss"] - ref["loss"]) / ref["loss"], F32_FLOOR)
            why = "torch f32 err %.2e" % naive_err
        check(dtypes == {"F64" if c["dtype"] == "f64" else "F32"}, "output dtypes %s" % dtypes)
        check(sorted(got) == sorted(names + ["loss"]), "output tensors %s" % sorted(got))
        for n in names:
            check(got[n].shape == adapter[n].shape, "%s shape %s, want %s" % (n, got[n].shape, adapter[n].shape))
        err = lfcase.rel_error(lfcase.grad_vector(got, names), lfcase.grad_vector(ref, names))
        check(err <= bound, "gradient rel err %.3e > %.3e (%s)" % (err, bound, why))
        loss = float(got["loss"].ravel()[0])
        loss_err = abs(loss - ref["loss"]) / ref["loss"]
        check(loss_err <= loss_bound, "loss %r vs torch %r: rel %.3e > %.3e" % (loss, ref["loss"], loss_err, loss_bound))
        doc = json.loads(stdout)
        check(doc["tokens"] == c["N"] * c["T"], "json tokens %r" % doc["tokens"])
        check(abs(doc["loss"] - ref["loss"]) <= max(loss_bound, 1e-5) * ref["loss"], "json loss %r" % doc["loss"])
        return "grad err %.2e, loss err %.2e (bound %.1e, %s)" % (err, loss_err, bound, why)
    return fn


for i, case in enumerate(CASES):
    harness.add("model-grad/" + case["name"], make_test(i, case))


def failing_run(binary, c, mutate, needle):
    """Writes a valid case, applies `mutate(paths)`, expects exit 3 naming `needle`."""
    with tempfile.TemporaryDirectory() as d:
        _, _, _, _, paths = write_case(c, d, 7)
        mutate(paths)
        out = os.path.join(paths["out"], "grads.safetensors")
        rc, stdout, stderr = lfcase.run_lorafast(binary, [
            "model-grad", "--model", paths["model"], "--adapter", paths["adapter"], "--tokens",
            paths["tokens.txt"], "--out", out, "--dtype", "f64"])
        check(rc == 3, "exit %d (want 3): %s" % (rc, stderr.strip()[:300]))
        check(stderr.startswith("lorafast: error:") and stderr.count("\n") == 1, "stderr %r" % stderr)
        check(needle in stderr, "stderr %r lacks %r" % (stderr, needle))
        check(os.listdir(paths["out"]) == [], "output dir holds %s" % os.listdir(paths["out"]))


def rewrite_model(paths, fn):
    path = os.path.join(paths["model"], "model.safetensors")
    tensors = lfcase.read_safetensors(path)
    fn(tensors)
    lfcase.write_safetensors(path, tensors)


def rewrite_adapter(paths, fn):
    path = os.path.join(paths["adapter"], "adapter_model.safetensors")
    tensors, metadata = lfcase.read_safetensors(path, with_metadata=True)
    fn(tensors)
    lfcase.write_safetensors(path, tensors, metadata)


ERR_CASE = CASES[0]


@harness.test
def error_missing_model_tensor(binary):
    failing_run(binary, ERR_CASE, lambda p: rewrite_model(p, lambda t: t.pop("transformer.h.1.mlp.c_fc.bias")),
                "missing tensor 'transformer.h.1.mlp.c_fc.bias'")


@harness.test
def error_model_shape(binary):
    def swap(t):
        t["transformer.h.0.attn.c_proj.weight"] = np.zeros((8, 9))
    failing_run(binary, ERR_CASE, lambda p: rewrite_model(p, swap), "'transformer.h.0.attn.c_proj.weight' has shape [8, 9]")


@harness.test
def error_adapter_shape(binary):
    name = gptcase.peft_name(1, "mlp.c_fc", "B")
    failing_run(binary, ERR_CASE, lambda p: rewrite_adapter(p, lambda t: t.update({name: np.zeros((32, 3))})),
                "lora_B has shape [32, 3], expected [32, 2]")


@harness.test
def error_adapter_frozen_rows(binary):
    c = CASES[1]  # q, v only: the k rows of c_attn's B must stay zero
    name = gptcase.peft_name(0, "attn.c_attn", "B")

    def poke(t):
        t[name][c["D"] + 2, 0] = 1.0
    failing_run(binary, c, lambda p: rewrite_adapter(p, poke), "the k rows of lora_B must be zero")


@harness.test
def error_token_outside_vocabulary(binary):
    def bad_token(p):
        with open(p["tokens.txt"], "a") as f:
            f.write(" ".join(["3"] * (ERR_CASE["T"])) + " 11\n")
    failing_run(binary, ERR_CASE, bad_token, "is 11, outside the vocabulary [0, 11)")


@harness.test
def error_ragged_token_file(binary):
    def ragged(p):
        with open(p["tokens.txt"], "a") as f:
            f.write("1 2\n")
    failing_run(binary, ERR_CASE, ragged, "line 3 has 2 tokens")


@harness.test
def error_config_heads(binary):
    def bad_config(p):
        path = os.path.join(p["model"], "config.json")
        with open(path) as f:
            cfg = json.load(f)
        cfg["n_head"] = 3
        with open(path, "w") as f:
            json.dump(cfg, f)
    failing_run(binary, ERR_CASE, bad_config, "'n_head' 3 does not divide 'n_embd' 8")


@harness.test
def model_grad_is_hidden(binary):
    rc, stdout, _ = lfcase.run_lorafast(binary, ["--help"])
    check(rc == 0 and "grad" in stdout and "model-grad" not in stdout, "help lists model-grad: %s" % stdout)


if __name__ == "__main__":
    sys.exit(harness.main())
