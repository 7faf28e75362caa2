"""Hostile files through the command line (INTERFACE.md "Errors"; issue "Hostile files,
round two"): deeply nested JSON, numbers out of range, a config that describes a model
far larger than its weights file, names carrying newlines and terminal escapes, a
checkpoint that contradicts itself, and a run whose last write used to fail.

Every error case asserts: exit 3, stderr exactly one line starting `lorafast: error:`
that names the file at fault and holds no control byte, within 60 s and under a 2 GiB
address-space limit (so a reader that allocates what a config describes fails the
test), and no output left behind.
"""

import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import gptcase  # noqa: E402
import lfcase  # noqa: E402
from lfcase import check  # noqa: E402

harness = lfcase.Harness(__doc__)

LAYERS, HEADS, D, V, P = 2, 2, 16, 256, 64
TEXT = b"the quick brown fox jumps over the lazy dog. " * 40
DEEP = 100_000  # nesting that overflowed the stack through a recursive dump or copy
MEMORY_LIMIT = 2 << 30


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run(binary, args, env=None):
    """(exit code, stdout, stderr bytes) of `binary args`, bounded in time and memory."""
    proc = subprocess.run([binary] + [a if isinstance(a, bytes) else str(a) for a in args], capture_output=True,
                          timeout=60, preexec_fn=limit_memory, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def expect_bad_file(binary, args, file_name, absent=None, env=None):
    rc, _, stderr = run(binary, args, env)
    text = stderr.decode("utf-8", "replace")
    check(rc == 3, "exit %d (want 3): %r" % (rc, text[-300:]))
    check(text.startswith("lorafast: error:") and text.count("\n") == 1 and text.endswith("\n"),
          "stderr is not one line: %r" % text[:300])
    check(all(b >= 0x20 and b != 0x7F for b in stderr[:-1]), "stderr holds a control byte: %r" % text[:300])
    check(len(stderr) < 1200, "stderr is %d bytes long" % len(stderr))
    check(file_name in text, "stderr %r does not name %s" % (text, file_name))
    if absent is not None:
        check(not os.path.exists(absent), "%s was created" % absent)
    return text


def deep(depth=DEEP):
    return "[" * depth + "]" * depth


def make_model(d):
    """A random byte-level model dir and a training text in d: (path, config, tensors, data path)."""
    rng = np.random.default_rng(0)
    config, t = gptcase.random_model(rng, LAYERS, HEADS, D, V, P)
    path = os.path.join(d, "model")
    gptcase.write_model_dir(path, config, t)
    return path, config, t, write(os.path.join(d, "data.txt"), TEXT)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return path


def config_text(config, **raw):
    """config.json text with fields replaced by raw JSON text (which may be huge)."""
    text = json.dumps({k: v for k, v in config.items() if k not in raw})
    return text[:-1] + "".join(', "%s": %s' % (k, v) for k, v in raw.items()) + "}"


def train_a_run(binary, d, model, data):
    out = os.path.join(d, "out")
    rc, _, err = run(binary, ["finetune", "--model", model, "--data", data, "--out", out, "--steps", 2, "--batch", 2,
                              "--seq-len", 16, "--threads", 1, "--eval-every", 0, "--sample-tokens", 0])
    check(rc == 0, "finetune failed: %r" % err[-400:])
    return out


def edit_checkpoint_metadata(path, edit):
    tensors, metadata = lfcase.read_safetensors(path, with_metadata=True)
    text = edit(metadata["lorafast.checkpoint"])
    lfcase.write_safetensors(path, tensors, {"lorafast.checkpoint": text})


@harness.test
def deep_json_in_config_is_bad_input(binary):
    with tempfile.TemporaryDirectory() as d:
        model, config, _, data = make_model(d)
        cfg = os.path.join(model, "config.json")
        for field in ["n_inner", "n_layer", "layer_norm_epsilon", "activation_function"]:
            write(cfg, config_text(config, **{field: deep()}))
            expect_bad_file(binary, ["eval", "--model", model, "--data", data], "config.json")
            out = os.path.join(d, "out")
            expect_bad_file(binary, ["finetune", "--model", model, "--data", data, "--out", out], "config.json", out)


@harness.test
def deep_json_in_adapter_config_is_bad_input(binary):
    with tempfile.TemporaryDirectory() as d:
        model, _, _, data = make_model(d)
        out = train_a_run(binary, d, model, data)
        adapter_config = os.path.join(out, "adapter_config.json")
        good = json.load(open(adapter_config))
        for field, value in [("rank_pattern", "{\"a\": %s}" % deep()), ("target_modules", "[%s]" % deep()),
                             ("r", deep())]:
            write(adapter_config, config_text(good, **{field: value}))
            expect_bad_file(binary, ["eval", "--model", model, "--adapter", out, "--data", data], "adapter_config.json")


@harness.test
def checkpoint_fields_out_of_range_are_bad_input(binary):
    """steps 1e300 (UB converting to int64), a deep format, val_fraction 5 (blamed
    --val-fraction, exit 2): each exits 3 naming the checkpoint and rewrites nothing."""
    with tempfile.TemporaryDirectory() as d:
        model, _, _, data = make_model(d)
        out = train_a_run(binary, d, model, data)
        ckpt = os.path.join(out, "checkpoint.safetensors")
        pristine = open(ckpt, "rb").read()

        def set_field(path_in_meta, raw):
            def edit(text):
                meta = json.loads(text)
                node = meta
                for key in path_in_meta[:-1]:
                    node = node[key]
                node[path_in_meta[-1]] = "@@RAW@@"
                return json.dumps(meta).replace('"@@RAW@@"', raw)
            return edit

        resume = ["finetune", "--model", model, "--data", data, "--out", out, "--resume", "--threads", 1]
        for field, raw in [(("options", "steps"), "1e300"), (("options", "seq_len"), "1e19"), (("step",), "1e300"),
                           (("options", "batch"), "18446744073709551615"), (("format",), deep()),
                           (("model", "n_embd"), deep()), (("val_fraction",), "5"), (("options", "method"),
                                                                                    '"x\\n\\u001b[31m"')]:
            write(ckpt, pristine)
            edit_checkpoint_metadata(ckpt, set_field(field, raw))
            before = {f: open(os.path.join(out, f), "rb").read() for f in os.listdir(out)}
            text = expect_bad_file(binary, resume, "checkpoint.safetensors")
            needle = "nested deeper" if raw.startswith("[[") else field[-1]
            check(needle in text, "stderr %r lacks %r" % (text, needle))
            after = {f: open(os.path.join(out, f), "rb").read() for f in os.listdir(out)}
            check(after == before, "a failed resume rewrote %s" % sorted(f for f in after if after[f] != before.get(f)))


@harness.test
def huge_number_in_safetensors_header_is_bad_input(binary):
    with tempfile.TemporaryDirectory() as d:
        header = b'{"a":1e400}'
        case = write(os.path.join(d, "case.safetensors"), struct.pack("<Q", len(header)) + header)
        out = os.path.join(d, "grads.safetensors")
        expect_bad_file(binary, ["grad", "--in", case, "--out", out], "case.safetensors", out)
        # A 100 MB header of empty lists (it peaked at 2.7 GB) is refused under the memory limit.
        header = b'{"x":[' + b"[]," * 33_000_000 + b"[]]}"
        case = write(os.path.join(d, "lists.safetensors"), struct.pack("<Q", len(header)) + header)
        expect_bad_file(binary, ["grad", "--in", case, "--out", out], "lists.safetensors", out)


@harness.test
def config_larger_than_its_weights_allocates_nothing(binary):
    with tempfile.TemporaryDirectory() as d:
        model, config, _, data = make_model(d)
        empty = b"{}" + b" " * 6
        write(os.path.join(model, "model.safetensors"), struct.pack("<Q", len(empty)) + empty)
        for sizes in [dict(n_layer=4096, n_embd=65536, n_head=1, n_positions=1 << 24),
                      dict(n_layer=4096, n_embd=4096, n_head=1)]:
            write(os.path.join(model, "config.json"), json.dumps(dict(config, **sizes)))
            expect_bad_file(binary, ["eval", "--model", model, "--data", data], "model.safetensors")


@harness.test
def block_index_beyond_64_bits_is_an_extra_block(binary):
    with tempfile.TemporaryDirectory() as d:
        model, config, t, data = make_model(d)
        t["h.99999999999999999999.ln_1.weight"] = t["h.0.ln_1.weight"]
        gptcase.write_model_dir(model, config, t)
        text = expect_bad_file(binary, ["eval", "--model", model, "--data", data], "model.safetensors")
        check("99999999999999999999" in text, "stderr %r does not name the tensor" % text)


@harness.test
def names_with_newlines_and_escapes_stay_on_one_line(binary):
    hostile = "x\n\x1b[31mlorafast: error: fake"
    with tempfile.TemporaryDirectory() as d:
        model, config, t, data = make_model(d)
        out = train_a_run(binary, d, model, data)
        adapter = os.path.join(out, "adapter_model.safetensors")
        tensors, metadata = lfcase.read_safetensors(adapter, with_metadata=True)
        lfcase.write_safetensors(adapter, dict(tensors, **{hostile: np.zeros(1)}), metadata)
        expect_bad_file(binary, ["eval", "--model", model, "--adapter", out, "--data", data],
                        "adapter_model.safetensors")
        adapter_config = os.path.join(out, "adapter_config.json")
        good = json.load(open(adapter_config))
        write(adapter_config, json.dumps(dict(good, target_modules=[hostile])))
        expect_bad_file(binary, ["eval", "--model", model, "--adapter", out, "--data", data], "adapter_config.json")


@harness.test
def cost_model_threads_out_of_range_is_bad_input(binary):
    with tempfile.TemporaryDirectory() as d:
        case = os.path.join(d, "case.safetensors")
        lfcase.write_safetensors(case, lfcase.random_case(np.random.default_rng(1), None, 4, 4, 2, "qv"))
        fields = {k: 1e-9 for k in ["exact_quadratic", "exact_scores", "exact_fixed", "fast_state", "fast_map",
                                    "fast_chunk", "fast_fixed", "chained_factor"]}
        cost = os.path.join(d, "cost_model.json")
        write(cost, json.dumps(fields)[:-1] + ', "threads": 1e300}')
        out = os.path.join(d, "grads.safetensors")
        env = dict(os.environ, LORAFAST_COST_MODEL=cost)
        text = expect_bad_file(binary, ["grad", "--in", case, "--out", out, "--method", "auto"], "cost_model.json",
                               out, env)
        check("threads" in text, "stderr %r does not name 'threads'" % text)


@harness.test
def model_path_not_utf8_keeps_the_finished_run(binary):
    """--model naming a directory whose name is not UTF-8: the run trains and writes
    everything; base_model_name_or_path holds U+FFFD for the bytes JSON cannot hold."""
    with tempfile.TemporaryDirectory() as d:
        model, _, _, data = make_model(d)
        odd = os.fsencode(d) + b"/model-\xff\xfe"
        os.rename(model, odd)
        out = os.path.join(d, "out")
        rc, _, err = run(binary, ["finetune", "--model", odd, "--data", data, "--out", out, "--steps", 2, "--batch",
                                  2, "--seq-len", 16, "--threads", 1, "--eval-every", 0, "--sample-tokens", 0])
        check(rc == 0, "exit %d: %r" % (rc, err[-400:]))
        for name in ["adapter_model.safetensors", "adapter_config.json", "checkpoint.safetensors", "train_log.csv"]:
            check(os.path.exists(os.path.join(out, name)), "%s is missing" % name)
        config = json.load(open(os.path.join(out, "adapter_config.json"), encoding="utf-8"))
        check(config["base_model_name_or_path"].endswith("model-\ufffd\ufffd"),
              "base_model_name_or_path %r" % config["base_model_name_or_path"])
        rc, _, err = run(binary, ["finetune", "--model", odd, "--data", data, "--out", out, "--resume", "--threads", 1])
        check(rc == 0, "resume: exit %d: %r" % (rc, err[-400:]))
        shutil.rmtree(odd)


@harness.test
def output_that_cannot_be_written_fails_before_training(binary):
    with tempfile.TemporaryDirectory() as d:
        model, _, _, data = make_model(d)
        out = os.path.join(d, "out")
        os.makedirs(os.path.join(out, "adapter_config.json"))
        expect_bad_file(binary, ["finetune", "--model", model, "--data", data, "--out", out, "--steps", 2],
                        "adapter_config.json")
        check(os.listdir(out) == ["adapter_config.json"], "files were written: %s" % os.listdir(out))


if __name__ == "__main__":
    sys.exit(harness.main())
