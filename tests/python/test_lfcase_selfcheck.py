"""Checks the test helpers themselves (no binary needed; --lorafast is accepted and
ignored): the safetensors reader/writer round-trips and rejects malformed files, and
the torch oracle agrees with an independent numpy transcription of SPEC.md §2 and
with central finite differences.
"""

import math
import os
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import lfcase  # noqa: E402
from lfcase import check  # noqa: E402

harness = lfcase.Harness(__doc__)


def numpy_spec_grads(case, heads=1, causal=False, alpha=None, rslora=False, scale=None):
    """SPEC.md §2 written out with explicit P, dS, dQ/dK/dV and the chain to A, B."""
    x, y = case["x"], case["y"]
    if x.ndim == 2:
        x, y = x[None], y[None]
    n, L, D = x.shape
    E = D // heads
    beta = 1.0 / math.sqrt(E) if scale is None else scale
    adapted = lfcase.adapted_of(case)
    weff, svals = {}, {}
    for p in "qkv":
        w = case["w_" + p].copy()
        if p in adapted:
            a, b = case["lora_a_" + p], case["lora_b_" + p]
            svals[p] = lfcase.lora_scaling(a.shape[0], alpha, rslora)
            w = w + svals[p] * b @ a
        weff[p] = w
    loss = 0.0
    grads = {"d_lora_%s_%s" % (ab, p): 0.0 for p in adapted for ab in "ab"}
    for i in range(n):
        X = x[i]
        Q, K, V = (X @ weff[p].T for p in "qkv")
        O = np.zeros_like(Q)
        dQ, dK, dV = np.zeros_like(Q), np.zeros_like(K), np.zeros_like(V)
        for h in range(heads):
            c = slice(h * E, (h + 1) * E)
            S = beta * Q[:, c] @ K[:, c].T
            if causal:
                S = np.where(np.triu(np.ones((L, L), bool), 1), -np.inf, S)
            P = np.exp(S - S.max(axis=1, keepdims=True))
            P /= P.sum(axis=1, keepdims=True)
            O[:, c] = P @ V[:, c]
        dO = O - y[i]
        loss += 0.5 * float((dO ** 2).sum())
        for h in range(heads):
            c = slice(h * E, (h + 1) * E)
            S = beta * Q[:, c] @ K[:, c].T
            if causal:
                S = np.where(np.triu(np.ones((L, L), bool), 1), -np.inf, S)
            P = np.exp(S - S.max(axis=1, keepdims=True))
            P /= P.sum(axis=1, keepdims=True)
            dV[:, c] = P.T @ dO[:, c]
            dP = dO[:, c] @ V[:, c].T
            delta = (dO[:, c] * O[:, c]).sum(axis=1)
            dS = P * (dP - delta[:, None])
            dQ[:, c] = beta * dS @ K[:, c]
            dK[:, c] = beta * dS.T @ Q[:, c]
        G = {"q": dQ, "k": dK, "v": dV}
        for p in adapted:
            a, b, s = case["lora_a_" + p], case["lora_b_" + p], svals[p]
            Z = X @ a.T  # [L, R]
            grads["d_lora_b_" + p] = grads["d_lora_b_" + p] + s * G[p].T @ Z
            grads["d_lora_a_" + p] = grads["d_lora_a_" + p] + (s * G[p] @ b).T @ X
    grads["loss"] = loss
    return grads


CONFIGS = [
    dict(N=None, L=7, D=6, R=2, adapted="qv", heads=3, causal=False),
    dict(N=2, L=5, D=5, R=8, adapted="qkv", heads=1, causal=True, alpha=4.0),
    dict(N=None, L=9, D=4, R=3, adapted="k", heads=2, causal=True, rslora=True, scale=0.7),
    dict(N=2, L=1, D=3, R=1, adapted="v", heads=3, causal=False, alpha=2.0, rslora=True),
]


def model_kwargs(cfg):
    return {k: cfg[k] for k in ("heads", "causal", "alpha", "rslora", "scale") if k in cfg}


def make_oracle_test(idx, cfg):
    def fn(_binary):
        rng = np.random.default_rng(100 + idx)
        case = lfcase.random_case(rng, cfg["N"], cfg["L"], cfg["D"], cfg["R"], cfg["adapted"])
        kw = model_kwargs(cfg)
        ref = lfcase.torch_grads(case, **kw)
        mine = numpy_spec_grads(case, **kw)
        names = sorted(lfcase.expected_outputs(case))
        check(sorted(k for k in ref if k != "loss") == names, "oracle names %s" % sorted(ref))
        # double vs double, different summation order only
        err = lfcase.rel_error(lfcase.grad_vector(ref, names), lfcase.grad_vector(mine, names))
        check(err <= 1e-12, "torch vs numpy SPEC §2: rel err %.3e" % err)
        check(abs(ref["loss"] - mine["loss"]) <= 1e-12 * abs(mine["loss"]), "loss differs")
        # Central differences on a few entries of every adapter tensor. Truncation error
        # O(h^2) with h = 1e-5 plus rounding ~ eps*loss/h: a few 1e-7 relative at most.
        fd_rng = np.random.default_rng(7)
        for name in names:
            src = name[2:]
            for flat in fd_rng.choice(case[src].size, size=min(3, case[src].size), replace=False):
                hstep = 1e-5
                plus = {k: v.copy() for k, v in case.items()}
                minus = {k: v.copy() for k, v in case.items()}
                plus[src].flat[flat] += hstep
                minus[src].flat[flat] -= hstep
                fd = (numpy_spec_grads(plus, **kw)["loss"] - numpy_spec_grads(minus, **kw)["loss"]) / (2 * hstep)
                g = ref[name].flat[flat]
                scale = max(1.0, np.abs(ref[name]).max())
                check(abs(fd - g) <= 1e-6 * scale, "%s[%d]: fd %.9g vs autograd %.9g" % (name, flat, fd, g))
    return fn


for i, c in enumerate(CONFIGS):
    harness.add("oracle/%d/L%d/D%d/R%d/%s" % (i, c["L"], c["D"], c["R"], c["adapted"]), make_oracle_test(i, c))


@harness.test
def safetensors_round_trip(_binary):
    rng = np.random.default_rng(1)
    tensors = {"b": rng.standard_normal((3, 1, 2)).astype(np.float32),
               "a": rng.standard_normal((5,)), "s": np.array(2.5), "e": np.zeros((0, 4))}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.safetensors")
        lfcase.write_safetensors(path, tensors, {"k": "v"})
        with open(path, "rb") as f:
            blob = f.read()
        hlen = int.from_bytes(blob[:8], "little")
        check(hlen % 8 == 0, "header not padded to 8: %d" % hlen)
        check(blob[8 + hlen - 1:8 + hlen] in (b" ", b"}"), "header padding is not spaces")
        back, meta = lfcase.read_safetensors(path, with_metadata=True)
        check(meta == {"k": "v"}, "metadata %r" % meta)
        check(set(back) == set(tensors), "names %s" % sorted(back))
        for k, v in tensors.items():
            check(back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v),
                  "tensor %s changed" % k)
        check(lfcase.file_dtypes(path) == {"b": "F32", "a": "F64", "s": "F64", "e": "F64"}, "dtypes")


@harness.test
def safetensors_reader_rejects_malformed(_binary):
    good = lfcase.safetensors_bytes({"x": np.ones((2, 2), np.float32)})
    header, data = lfcase.safetensors_layout({"x": np.ones((2, 2), np.float32),
                                              "y": np.ones((2, 2), np.float32)})
    overlap = dict(header)
    overlap["y"] = dict(header["y"], data_offsets=[8, 24])
    bad = {
        "short": good[:5],
        "header past end": good[:8] + b"{}",
        "bad json": lfcase.pack_safetensors(b'{"x": {', b""),
        "offsets past end": good[:-1],
        "overlap": lfcase.pack_safetensors(overlap, data),
        "dtype": lfcase.pack_safetensors({"x": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
    }
    for what, blob in bad.items():
        try:
            lfcase.parse_safetensors(blob)
        except ValueError:
            continue
        raise lfcase.CheckFailed("reader accepted malformed file: " + what)


if __name__ == "__main__":
    sys.exit(harness.main())
