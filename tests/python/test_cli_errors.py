"""Bad input through `lorafast grad` (INTERFACE.md "Errors").

Every case asserts: the exit code (2 usage, 3 bad input, 4 cannot meet the request),
that stderr is exactly one line starting `lorafast: error:` which names the thing at
fault (tensor name, flag, path or byte offset), and that no output file appears. Each
case runs twice: once with no output file (none may appear, and the output directory
must stay empty: no leftover temporary file) and once over a pre-existing output file,
which must be left byte-for-byte unchanged.

The base case is valid (checked by `control/*`), and each error case changes exactly
one thing in it.
"""

import math
import os
import re
import struct
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import lfcase  # noqa: E402
from lfcase import check  # noqa: E402

harness = lfcase.Harness(__doc__)

# Methods the build cannot run yet: `--method M` must exit 4 and name --method. When a
# method lands, delete it from this set; the test then expects it to succeed.

EXIT_USAGE, EXIT_BAD_INPUT, EXIT_CANNOT_MEET = 2, 3, 4
L, D, R = 4, 4, 2
SENTINEL = b"pre-existing output: must survive a failed run\n"
DIGIT = r"\d"  # a byte offset or length


def tensor(name):
    """Regex: `name` as a whole word (so `x` does not match inside `lora_b_x`)."""
    return r"(?<![A-Za-z0-9_])%s(?![A-Za-z0-9_])" % re.escape(name)


def flag(name):
    return re.escape(name)


def base_case(dtype=np.float32):
    """Valid 2-D case: x, y [L, D]; w_q, w_k, w_v [D, D]; q and v adapted with rank R."""
    return lfcase.random_case(np.random.default_rng(5), None, L, D, R, "qv", dtype=dtype)


def base_bytes():
    return lfcase.safetensors_bytes(base_case())


def with_tensors(**changes):
    """Base case with tensors replaced (value) or removed (None)."""
    case = base_case()
    for k, v in changes.items():
        if v is None:
            case.pop(k)
        else:
            case[k] = v
    return lfcase.safetensors_bytes(case)


def poisoned(name, value, index=(1, 2), dtype=np.float32):
    case = base_case(dtype)
    case[name][index] = value
    return lfcase.safetensors_bytes(case)


def with_header_edit(edit, drop=()):
    """Base layout (without the tensors in `drop`), header edited in place by `edit`."""
    case = base_case()
    for k in drop:
        case.pop(k)
    header, data = lfcase.safetensors_layout(case)
    edit(header, data)
    return lfcase.pack_safetensors(header, data)


def header_len_set(n):
    blob = base_bytes()
    return struct.pack("<Q", n) + blob[8:]


def truncated_in_header():
    blob = base_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    return blob[:8 + n // 2]


def truncated_in_data():
    blob = base_bytes()
    return blob[:-6]  # cuts into the last tensor's bytes


def edit_offsets(name, begin_end):
    def edit(header, data):
        header[name]["data_offsets"] = list(begin_end(header, data))
    return edit


def set_dtype(name, dt):
    def edit(header, _data):
        header[name]["dtype"] = dt
    return edit


def set_shape(name, shape):
    def edit(header, _data):
        header[name]["shape"] = shape
    return edit


def add_alias(name, of, shift):
    """Tensor `name` declared over the bytes of `of`, shifted by `shift` bytes."""
    def edit(header, _data):
        b, e = header[of]["data_offsets"]
        header[name] = {"dtype": header[of]["dtype"], "shape": header[of]["shape"],
                        "data_offsets": [b + shift, e + shift]}
    return edit


# name -> (file bytes or None for a missing file, extra args, exit code, [regex any-of])
CASES = {
    # --- corrupt files: exit 3, name a byte offset / length or the tensor
    "file/empty": (b"", [], EXIT_BAD_INPUT, [DIGIT]),
    "file/truncated_in_length": (base_bytes()[:5], [], EXIT_BAD_INPUT, [DIGIT]),
    "file/truncated_in_header": (truncated_in_header(), [], EXIT_BAD_INPUT, [DIGIT]),
    "file/truncated_in_data": (truncated_in_data(), [], EXIT_BAD_INPUT, [tensor("lora_b_v"), DIGIT]),
    "file/header_length_1e12": (header_len_set(10 ** 12), [], EXIT_BAD_INPUT, [DIGIT]),
    "file/header_length_wraps_uint64": (header_len_set(2 ** 64 - 8), [], EXIT_BAD_INPUT, [DIGIT]),
    "file/bad_json": (lfcase.pack_safetensors(b'{"x": {"dtype": "F32", "shape": [4, ', b"\0" * 64),
                      [], EXIT_BAD_INPUT, [DIGIT, "JSON", "json"]),
    "file/header_not_object": (lfcase.pack_safetensors(b"[1, 2, 3]", b""), [], EXIT_BAD_INPUT,
                               [DIGIT, "JSON", "json", "header"]),
    "file/offsets_past_end": (with_header_edit(edit_offsets("w_k", lambda h, d: (len(d) - 8, len(d) + 56))),
                              [], EXIT_BAD_INPUT, [tensor("w_k")]),
    "file/offsets_begin_after_end": (with_header_edit(edit_offsets("w_k", lambda h, d: (h["w_k"]["data_offsets"][1], h["w_k"]["data_offsets"][0]))),
                                     [], EXIT_BAD_INPUT, [tensor("w_k")]),
    "file/offsets_overlap_fully": (with_header_edit(add_alias("y", "x", 0), drop=("y",)),
                                   [], EXIT_BAD_INPUT, [tensor("x"), tensor("y")]),
    "file/offsets_overlap_partly": (with_header_edit(add_alias("y", "x", 16), drop=("y",)),
                                    [], EXIT_BAD_INPUT, [tensor("x"), tensor("y"), tensor("w_q")]),
    "file/dtype_I32": (with_header_edit(set_dtype("w_k", "I32")), [], EXIT_BAD_INPUT, [tensor("w_k")]),
    "file/dtype_Q4": (with_header_edit(set_dtype("x", "Q4")), [], EXIT_BAD_INPUT, [tensor("x")]),
    "file/size_mismatch": (with_header_edit(set_shape("x", [L, D + 1])), [], EXIT_BAD_INPUT, [tensor("x")]),
    # --- non-finite values: exit 3, name the tensor
    "value/nan_in_x": (poisoned("x", math.nan), [], EXIT_BAD_INPUT, [tensor("x")]),
    "value/inf_in_w_q": (poisoned("w_q", math.inf), [], EXIT_BAD_INPUT, [tensor("w_q")]),
    "value/neg_inf_in_y": (poisoned("y", -math.inf, (3, 3)), [], EXIT_BAD_INPUT, [tensor("y")]),
    "value/nan_in_lora_b_v_f64": (poisoned("lora_b_v", math.nan, (0, 0), np.float64), [], EXIT_BAD_INPUT,
                                  [tensor("lora_b_v")]),
    # --- missing tensors and wrong shapes: exit 3, name the tensor
    "tensor/missing_x": (with_tensors(x=None), [], EXIT_BAD_INPUT, [tensor("x")]),
    "tensor/missing_w_v": (with_tensors(w_v=None), [], EXIT_BAD_INPUT, [tensor("w_v")]),
    "tensor/w_q_not_square": (with_tensors(w_q=np.ones((D, D + 1), np.float32)), [], EXIT_BAD_INPUT,
                              [tensor("w_q")]),
    "tensor/lora_rank_mismatch": (with_tensors(lora_a_q=np.ones((R + 1, D), np.float32)), [], EXIT_BAD_INPUT,
                                  [tensor("lora_a_q"), tensor("lora_b_q")]),
    "tensor/lora_b_wrong_out_dim": (with_tensors(lora_b_v=np.ones((D + 2, R), np.float32)), [], EXIT_BAD_INPUT,
                                    [tensor("lora_b_v")]),
    "tensor/y_shape_differs": (with_tensors(y=np.ones((L + 1, D), np.float32)), [], EXIT_BAD_INPUT,
                               [tensor("y")]),
    "tensor/x_1d": (with_tensors(x=np.ones((L * D,), np.float32)), [], EXIT_BAD_INPUT, [tensor("x")]),
    "tensor/lora_a_without_lora_b": (with_tensors(lora_a_k=np.ones((R, D), np.float32)), [], EXIT_BAD_INPUT,
                                     [tensor("lora_a_k"), tensor("lora_b_k")]),
    "tensor/lora_b_without_lora_a": (with_tensors(lora_a_v=None), [], EXIT_BAD_INPUT,
                                     [tensor("lora_a_v"), tensor("lora_b_v")]),
    "input/nonexistent_file": (None, [], EXIT_BAD_INPUT, [r"no_such_case\.safetensors", flag("--in")]),
    # --- usage: exit 2, name the flag
    "usage/unknown_flag": (base_bytes(), ["--bogus"], EXIT_USAGE, [flag("--bogus")]),
    "usage/dtype_f16": (base_bytes(), ["--dtype", "f16"], EXIT_USAGE, [flag("--dtype")]),
    "usage/heads_not_dividing_D": (base_bytes(), ["--heads", "3"], EXIT_USAGE, [flag("--heads")]),
    "usage/heads_0": (base_bytes(), ["--heads", "0"], EXIT_USAGE, [flag("--heads")]),
    "usage/threads_0": (base_bytes(), ["--threads", "0"], EXIT_USAGE, [flag("--threads")]),
    "usage/method_unknown": (base_bytes(), ["--method", "magic"], EXIT_USAGE, [flag("--method")]),
    "usage/alpha_not_a_number": (base_bytes(), ["--alpha", "abc"], EXIT_USAGE, [flag("--alpha")]),
    # --- odd degree: exit 3 (INTERFACE.md lists it under bad input)
    "input/odd_degree": (base_bytes(), ["--degree", "3"], EXIT_BAD_INPUT, [flag("--degree")]),
}
# Scores far beyond what any degree <= 64 certifies: fast and chained must refuse (4)
# and name the method that can.
_loud = base_case()
for _w in ("w_q", "w_k", "lora_b_q"):
    _loud[_w] = _loud[_w] * 40
for _m in ("fast", "chained"):
    CASES["method/%s_cannot_meet_eps" % _m] = (lfcase.safetensors_bytes(_loud), ["--method", _m, "--eps", "1e-6"],
                                               EXIT_CANNOT_MEET, [r"--method exact"])


def check_stderr(stderr, patterns):
    text = stderr.rstrip("\n")
    check(text.startswith("lorafast: error:"), "stderr does not start with 'lorafast: error:': %r" % stderr[:300])
    check("\n" not in text, "stderr is not one line: %r" % stderr[:300])
    check(any(re.search(p, text) for p in patterns),
          "stderr names none of %s: %r" % (patterns, text))


def run_case(binary, blob, extra, want_rc, patterns, out_dir_name="out"):
    with tempfile.TemporaryDirectory() as d:
        inp = os.path.join(d, "no_such_case.safetensors" if blob is None else "case.safetensors")
        if blob is not None:
            with open(inp, "wb") as f:
                f.write(blob)
        for preexisting in (False, True):
            outdir = os.path.join(d, "%s_%d" % (out_dir_name, preexisting))
            os.mkdir(outdir)
            out = os.path.join(outdir, "grads.safetensors")
            if preexisting:
                with open(out, "wb") as f:
                    f.write(SENTINEL)
            rc, stdout, stderr = lfcase.run_lorafast(binary, ["grad", "--in", inp, "--out", out] + extra)
            where = "with pre-existing output" if preexisting else "without output file"
            check(rc == want_rc, "%s: exit %d, want %d; stderr %r" % (where, rc, want_rc, stderr[:300]))
            check_stderr(stderr, patterns)
            left = sorted(os.listdir(outdir))
            if preexisting:
                check(left == ["grads.safetensors"], "%s: output dir holds %s" % (where, left))
                with open(out, "rb") as f:
                    check(f.read() == SENTINEL, "pre-existing output file was modified")
            else:
                check(left == [], "%s: output dir holds %s" % (where, left))
    return "exit %d: %s" % (rc, stderr.strip()[len("lorafast: error:"):].strip()[:90])


def make_test(blob, extra, want_rc, patterns):
    return lambda binary: run_case(binary, blob, extra, want_rc, patterns)


for _name, (_blob, _extra, _rc, _patterns) in CASES.items():
    harness.add(_name, make_test(_blob, _extra, _rc, _patterns))


@harness.test
def control_valid_base_case_succeeds(binary):
    """Guards against vacuous passes: the unmodified base case works (and overwrites)."""
    for dtype in (np.float32, np.float64):
        with tempfile.TemporaryDirectory() as d:
            inp, out = os.path.join(d, "case.safetensors"), os.path.join(d, "grads.safetensors")
            lfcase.write_safetensors(inp, base_case(dtype))
            with open(out, "wb") as f:
                f.write(SENTINEL)
            rc, _, stderr = lfcase.run_lorafast(binary, ["grad", "--in", inp, "--out", out])
            check(rc == 0, "valid base case failed: exit %d %r" % (rc, stderr))
            got = lfcase.read_safetensors(out)
            check(sorted(got) == ["d_lora_a_q", "d_lora_a_v", "d_lora_b_q", "d_lora_b_v", "loss"],
                  "outputs %s" % sorted(got))
            check(sorted(os.listdir(d)) == ["case.safetensors", "grads.safetensors"],
                  "leftover files %s" % os.listdir(d))


def make_method_test(method):
    def fn(binary):
        with tempfile.TemporaryDirectory() as d:
            inp, out = os.path.join(d, "case.safetensors"), os.path.join(d, "grads.safetensors")
            lfcase.write_safetensors(inp, base_case())
            # A forced degree always runs (--eps is then not enforced).
            args = ["grad", "--in", inp, "--out", out, "--method", method, "--degree", "4"]
            rc, _, stderr = lfcase.run_lorafast(binary, args)
            check(rc == 0, "--method %s: exit %d %r" % (method, rc, stderr))
            check(os.path.exists(out), "no output")
    return fn


for _m in ("fast", "chained"):
    harness.add("method/%s_runs" % _m, make_method_test(_m))


@harness.test
def out_in_nonexistent_directory(binary):
    with tempfile.TemporaryDirectory() as d:
        inp = os.path.join(d, "case.safetensors")
        lfcase.write_safetensors(inp, base_case())
        missing = os.path.join(d, "no_such_dir")
        out = os.path.join(missing, "grads.safetensors")
        rc, _, stderr = lfcase.run_lorafast(binary, ["grad", "--in", inp, "--out", out])
        check(rc != 0, "exit 0 writing into a nonexistent directory")
        check_stderr(stderr, [r"no_such_dir", flag("--out")])
        check(not os.path.exists(missing), "the missing directory was created")
        check(sorted(os.listdir(d)) == ["case.safetensors"], "stray files %s" % os.listdir(d))
        return "exit %d: %s" % (rc, stderr.strip()[:100])


@harness.test
def threads_huge_does_not_crash(binary):
    """`--threads 100000` may be clamped (exit 0) or refused as a bad value (exit 2),
    but must not crash: "bad input never crashes"."""
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "case.safetensors"), os.path.join(d, "grads.safetensors")
        lfcase.write_safetensors(inp, base_case())
        rc, _, stderr = lfcase.run_lorafast(binary, ["grad", "--in", inp, "--out", out, "--threads", "100000"])
        check(rc in (0, EXIT_USAGE), "exit %d (negative = killed by signal %d); stderr %r"
              % (rc, -rc if rc < 0 else 0, stderr[:200]))
        if rc == 0:
            check(sorted(lfcase.read_safetensors(out)) ==
                  ["d_lora_a_q", "d_lora_a_v", "d_lora_b_q", "d_lora_b_v", "loss"], "bad output")
        else:
            check_stderr(stderr, [flag("--threads")])
            check(not os.path.exists(out), "output written despite the error")
        return "exit %d" % rc


@harness.test
def missing_out_flag(binary):
    with tempfile.TemporaryDirectory() as d:
        inp = os.path.join(d, "case.safetensors")
        lfcase.write_safetensors(inp, base_case())
        rc, _, stderr = lfcase.run_lorafast(binary, ["grad", "--in", inp])
        check(rc == EXIT_USAGE, "exit %d, want %d" % (rc, EXIT_USAGE))
        check_stderr(stderr, [flag("--out")])
        check(sorted(os.listdir(d)) == ["case.safetensors"], "stray files %s" % os.listdir(d))


if __name__ == "__main__":
    sys.exit(harness.main())
