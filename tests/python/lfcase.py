"""Shared helpers for the Python tests that drive the `lorafast` binary.

- a tiny safetensors reader/writer (no safetensors package on the test machine);
- random LoRA-attention cases with the tensor names of INTERFACE.md;
- the PyTorch oracle: autograd of SPEC.md section 1 in float64 (or float32 as the
  naive-precision yardstick);
- `run_lorafast` and a minimal test harness whose closing line is `P passed, F failed`.

Shape legend (SPEC.md): N batch, L sequence, D width = H * E, R LoRA rank.
Only numpy and torch from Debian are used.
"""

import argparse
import json
import math
import os
import struct
import subprocess
import sys
import time
import traceback

import numpy as np
import torch

PROJECTIONS = ("q", "k", "v")

# safetensors dtype names <-> numpy dtypes (little-endian, row-major).
_NP_OF_DTYPE = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
}
_DTYPE_OF_NP = {v: k for k, v in _NP_OF_DTYPE.items()}


# ---------------------------------------------------------------- safetensors

def dtype_name(array):
    """safetensors dtype string of a numpy array ("F32", "F64", ...)."""
    dt = np.asarray(array).dtype.newbyteorder("<")
    if dt not in _DTYPE_OF_NP:
        raise ValueError("no safetensors dtype for numpy dtype %s" % dt)
    return _DTYPE_OF_NP[dt]


def pack_safetensors(header, data, header_len=None, pad=True):
    """Raw file bytes from a header object (or pre-encoded header bytes) and a data
    blob. `header_len` overrides the 8-byte length field (for hostile-input tests);
    `pad` pads the header with spaces to a multiple of 8 bytes."""
    hb = header if isinstance(header, (bytes, bytearray)) else json.dumps(
        header, separators=(",", ":")).encode("utf-8")
    if pad:
        hb = hb + b" " * ((-len(hb)) % 8)
    n = len(hb) if header_len is None else header_len
    return struct.pack("<Q", n) + bytes(hb) + bytes(data)


def safetensors_layout(tensors, metadata=None):
    """(header dict, data bytes) for a dict of numpy arrays, in insertion order."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks = []
    offset = 0
    for name, value in tensors.items():
        a = np.asarray(value)
        dt = dtype_name(a)
        raw = np.ascontiguousarray(a, dtype=_NP_OF_DTYPE[dt]).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    return header, b"".join(chunks)


def safetensors_bytes(tensors, metadata=None):
    header, data = safetensors_layout(tensors, metadata)
    return pack_safetensors(header, data)


def write_safetensors(path, tensors, metadata=None):
    """Write a dict {name: numpy array} (F32/F64/...) as a safetensors file."""
    with open(path, "wb") as f:
        f.write(safetensors_bytes(tensors, metadata))


def parse_safetensors(blob, with_metadata=False):
    """Strictly parse safetensors bytes; raises ValueError on anything malformed."""
    if len(blob) < 8:
        raise ValueError("file shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise ValueError("header length %d exceeds the file" % n)
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError("bad JSON header: %s" % e)
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    data = memoryview(blob)[8 + n:]
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    spans = []
    for name, info in header.items():
        dt = info.get("dtype")
        if dt not in _NP_OF_DTYPE:
            raise ValueError("tensor %r: unknown dtype %r" % (name, dt))
        shape = tuple(int(s) for s in info["shape"])
        begin, end = (int(o) for o in info["data_offsets"])
        if not 0 <= begin <= end <= len(data):
            raise ValueError("tensor %r: offsets [%d, %d] outside data of %d bytes"
                             % (name, begin, end, len(data)))
        npdt = _NP_OF_DTYPE[dt]
        if end - begin != int(np.prod(shape, dtype=np.int64)) * npdt.itemsize:
            raise ValueError("tensor %r: %d bytes for shape %s %s"
                             % (name, end - begin, list(shape), dt))
        spans.append((begin, end, name))
        tensors[name] = np.frombuffer(bytes(data[begin:end]), dtype=npdt).reshape(shape).copy()
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ValueError("tensors %r and %r overlap" % (n0, n1))
    return (tensors, metadata) if with_metadata else tensors


def read_safetensors(path, with_metadata=False):
    """Read a safetensors file into {name: numpy array} (and metadata if asked)."""
    with open(path, "rb") as f:
        return parse_safetensors(f.read(), with_metadata)


def file_dtypes(path):
    """{name: dtype string} as declared in a safetensors file's header."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    return {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}


# ---------------------------------------------------------------- cases

def random_case(rng, N, L, D, R, adapted="qv", weight_gain=1.0, dtype=np.float64):
    """Tensors of one `lorafast grad` case (INTERFACE.md names).

    x, y: [N, L, D] ([L, D] when N is None); w_p: [D, D]; for p in `adapted`:
    lora_a_p [R, D], lora_b_p [D, R]. Weights ~ N(0, gain^2 / D) so that the
    projections have O(gain) entries; B is non-zero so every gradient term is live.
    """
    shape = (L, D) if N is None else (N, L, D)
    case = {
        "x": rng.standard_normal(shape),
        "y": rng.standard_normal(shape),
    }
    for p in PROJECTIONS:
        case["w_" + p] = weight_gain * rng.standard_normal((D, D)) / math.sqrt(D)
    for p in adapted:
        if p not in PROJECTIONS:
            raise ValueError("adapted must be a subset of 'qkv', got %r" % adapted)
        case["lora_a_" + p] = rng.standard_normal((R, D)) / math.sqrt(D)
        case["lora_b_" + p] = 0.5 * rng.standard_normal((D, R)) / math.sqrt(R)
    return {k: np.ascontiguousarray(v, dtype=dtype) for k, v in case.items()}


def adapted_of(case):
    """Projections with a LoRA pair in the case, in q, k, v order."""
    return [p for p in PROJECTIONS if "lora_a_" + p in case and "lora_b_" + p in case]


def expected_outputs(case):
    """{name: shape} that `lorafast grad` must write, loss excluded (it may be [] or [1])."""
    out = {}
    for p in adapted_of(case):
        out["d_lora_a_" + p] = tuple(case["lora_a_" + p].shape)
        out["d_lora_b_" + p] = tuple(case["lora_b_" + p].shape)
    return out


def lora_scaling(R, alpha=None, rslora=False):
    """s = alpha / R, or alpha / sqrt(R) with rsLoRA; alpha defaults to R (SPEC §1)."""
    a = float(R) if alpha is None else float(alpha)
    return a / math.sqrt(R) if rslora else a / R


def torch_grads(case, heads=1, causal=False, alpha=None, rslora=False, scale=None,
                dtype=torch.float64, autocast=False):
    """Loss 1/2 sum ||O - Y||^2 of multi-head LoRA attention (SPEC §1) and its
    gradient w.r.t. every lora_a_p / lora_b_p, by torch autograd in `dtype`; with
    autocast (dtype float32), under torch.autocast("cpu", torch.bfloat16): the
    matrix products in bf16, the softmax and the loss in f32, as people train in bf16.

    Returns {"loss": float, "d_lora_a_p": ndarray (float64), "d_lora_b_p": ...}.
    """
    t = {k: torch.tensor(np.asarray(v, dtype=np.float64), dtype=dtype) for k, v in case.items()}
    x, y = t["x"], t["y"]
    if x.dim() == 2:  # [L, D] -> [1, L, D]
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    n, L, D = x.shape
    if D % heads:
        raise ValueError("heads %d does not divide D %d" % (heads, D))
    E = D // heads
    beta = 1.0 / math.sqrt(E) if scale is None else float(scale)

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss, leaves = _lora_attention_loss(t, x, y, n, L, D, E, heads, beta, causal, alpha, rslora, case)
    loss.backward()

    result = {"loss": float(loss.detach())}
    for name, leaf in leaves.items():
        result["d_" + name] = leaf.grad.detach().to(torch.float64).numpy().copy()
    return result


def _lora_attention_loss(t, x, y, n, L, D, E, heads, beta, causal, alpha, rslora, case):
    leaves = {}
    proj = {}
    for p in PROJECTIONS:
        w = t["w_" + p]
        if p in adapted_of(case):
            a = t["lora_a_" + p].requires_grad_(True)
            b = t["lora_b_" + p].requires_grad_(True)
            leaves["lora_a_" + p], leaves["lora_b_" + p] = a, b
            s = lora_scaling(a.shape[0], alpha, rslora)
            w = w + s * (b @ a)  # W_eff = W + s B A: [D, D], [out, in]
        # [N, L, D] -> [N, H, L, E]
        proj[p] = (x @ w.T).reshape(n, L, heads, E).permute(0, 2, 1, 3)

    scores = beta * (proj["q"] @ proj["k"].transpose(-1, -2))  # S: [N, H, L, L]
    if causal:
        above = torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1)
        scores = scores.masked_fill(above, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = (probs @ proj["v"]).permute(0, 2, 1, 3).reshape(n, L, D)  # O: [N, L, D]
    return 0.5 * ((out.to(y.dtype) - y) ** 2).sum(), leaves


def grad_vector(grads, names):
    """All named gradient tensors flattened into one float64 vector."""
    return np.concatenate([np.asarray(grads[n], dtype=np.float64).ravel() for n in names])


def rel_error(got, ref):
    """Relative Frobenius error ||got - ref|| / ||ref|| (absolute when ref == 0)."""
    got = np.asarray(got, dtype=np.float64).ravel()
    ref = np.asarray(ref, dtype=np.float64).ravel()
    den = float(np.linalg.norm(ref))
    num = float(np.linalg.norm(got - ref))
    if not np.all(np.isfinite(got)):
        return float("inf")
    return num / den if den > 0 else num


# ---------------------------------------------------------------- running the binary

def run_lorafast(binary, args, timeout=120, cwd=None, env=None):
    """Run `binary args...` (in `env` if given, else this process's environment);
    returns (exit code, stdout, stderr) as text."""
    proc = subprocess.run([binary] + [str(a) for a in args], capture_output=True,
                          timeout=timeout, cwd=cwd, env=env)
    return (proc.returncode, proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"))


# ---------------------------------------------------------------- harness

class CheckFailed(AssertionError):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


class Harness:
    """Collects named test functions fn(binary) and runs them; a test may return a
    short note (e.g. the measured error) that is printed after its name.

    The closing line is exactly `P passed, F failed`; the exit status is non-zero
    when any test failed (or none ran)."""

    def __init__(self, description=""):
        self.description = description
        self.tests = []

    def add(self, name, fn):
        self.tests.append((name, fn))

    def test(self, fn):
        self.add(fn.__name__, fn)
        return fn

    def main(self, argv=None):
        parser = argparse.ArgumentParser(description=self.description)
        parser.add_argument("--lorafast", required=True, help="path of the lorafast binary")
        parser.add_argument("-k", dest="filter", default="", help="run tests whose name contains this")
        parser.add_argument("-q", dest="quiet", action="store_true", help="print failures only")
        opts = parser.parse_args(argv)
        binary = os.path.abspath(opts.lorafast)
        passed = failed = 0
        start = time.time()
        for name, fn in self.tests:
            if opts.filter and opts.filter not in name:
                continue
            t0 = time.time()
            try:
                note = fn(binary)
            except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
                failed += 1
                detail = str(e) if isinstance(e, CheckFailed) else traceback.format_exc()
                print("FAIL %s: %s" % (name, detail.rstrip()), flush=True)
            else:
                passed += 1
                if not opts.quiet:
                    print("ok   %s (%.2fs)%s" % (name, time.time() - t0, "  " + note if note else ""),
                          flush=True)
        if not opts.quiet:
            print("# %.1fs total" % (time.time() - start))
        print("%d passed, %d failed" % (passed, failed))
        return 1 if failed or passed == 0 else 0
