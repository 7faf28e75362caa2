"""`lorafast finetune --method/--eps/--degree` and `--positions`, on a tiny random
byte-level GPT-2 model (2 layers, 2 heads, width 16, n_positions 64).

- the attention decision: one line per layer on stderr for the first update and
  whenever a layer's methods or degrees change (also across --resume), and one row
  per head of those layers in attention_plan.csv;
- --method fast that cannot certify --eps: exit 4 naming the layer and the method
  that can, before anything is written; bad --eps / --degree: exit 2 / 3;
- --positions: --seq-len beyond n_positions is refused pointing at it; with it the
  run trains, and the adapter evaluates against the unmodified base model exactly as
  against the extended one (positions below n_positions are unchanged); eval needs
  the flag only beyond n_positions; --resume needs the same --positions;
- --recompute always / never give byte-identical adapters and logged losses (the
  flag reaches the backward pass; exact and fast heads);
- memory stays linear in the sequence length: one update at T = 8192 (exact, and
  fast at degree 2) peaks at ~35 MB resident, where a single T x T float matrix
  would add 256 MiB; the bound 150 MB fails any such buffer.
"""

import csv
import json
import os
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import gptcase  # noqa: E402
import lfcase  # noqa: E402
from lfcase import check  # noqa: E402

harness = lfcase.Harness(__doc__)

TEXT = "the quick brown fox jumps over the lazy dog. " * 40


def make_model(d):
    rng = np.random.default_rng(0)
    config, t = gptcase.random_model(rng, 2, 2, 16, 256, 64)
    t["wte.weight"] = 0.2 * t["wte.weight"]
    path = os.path.join(d, "model")
    gptcase.write_model_dir(path, config, t)
    return path


def write_text(d):
    path = os.path.join(d, "data.txt")
    with open(path, "w") as f:
        f.write(TEXT)
    return path


def run_ok(binary, args):
    rc, out, err = lfcase.run_lorafast(binary, args, timeout=300)
    check(rc == 0, "exit %d for %s: %s" % (rc, " ".join(map(str, args)), err.strip()[-800:]))
    return out, err


def expect_error(binary, args, code, needles, absent=None):
    rc, _, stderr = lfcase.run_lorafast(binary, args)
    check(rc == code, "exit %d (want %d): %s" % (rc, code, stderr.strip()[-300:]))
    check(stderr.startswith("lorafast: error:") and stderr.count("\n") == 1, "stderr %r" % stderr)
    check("`" not in stderr, "stderr %r names a library parameter, not its flag" % stderr)
    for needle in needles:
        check(needle in stderr, "stderr %r lacks %r" % (stderr, needle))
    if absent is not None:
        check(not os.path.exists(absent), "%s was created" % absent)


def attention_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("attention layer")]


def plan_rows(out):
    with open(os.path.join(out, "attention_plan.csv")) as f:
        return list(csv.DictReader(f))


@harness.test
def method_decisions_are_logged(binary):
    with tempfile.TemporaryDirectory() as d:
        model, data, out = make_model(d), write_text(d), os.path.join(d, "out")
        ft = ["finetune", "--model", model, "--data", data, "--out", out, "--steps", 3, "--batch", 2,
              "--seq-len", 32, "--threads", 1, "--eval-every", 0]
        _, err = run_ok(binary, ft + ["--method", "exact", "--stop-after", 2])
        lines = attention_lines(err)
        check(len(lines) == 2 and all("@ step 1: exact x2 | G " in l and "exact: requested" in l for l in lines),
              "exact lines %s" % lines)
        rows = plan_rows(out)
        check(len(rows) == 4 and {r["step"] for r in rows} == {"1"} and {r["method"] for r in rows} == {"exact"}
              and all(r["degree"] == "" and float(r["score_bound"]) > 0 for r in rows), "exact rows %s" % rows)

        # The same run resumed with --method fast --degree 4: a new decision at step 3.
        _, err = run_ok(binary, ft + ["--resume", "--method", "fast", "--degree", 4])
        lines = attention_lines(err)
        check(len(lines) == 2 and all("@ step 3: fast x2 (degree 4, F 495)" in l for l in lines),
              "fast lines %s" % lines)
        rows = plan_rows(out)
        check([r["step"] for r in rows] == ["1"] * 4 + ["3"] * 4, "steps %s" % [r["step"] for r in rows])
        check(all(r["method"] == "fast" and r["degree"] == "4" and r["features"] == "495"
                  and "eps not enforced" in r["reason"] for r in rows[4:]), "fast rows %s" % rows[4:])
        with open(os.path.join(out, "train_log.csv")) as f:
            check(len(f.read().splitlines()) == 4, "train_log.csv rows")

        # At this model's scores (G of 4 to 8) degree 30 would need 4.9e7 features.
        fresh = os.path.join(d, "fresh")
        ft_fresh = [fresh if a == out else a for a in ft]
        expect_error(binary, ft_fresh + ["--method", "fast"], 4, ["layer 0, head 0", "--method exact can"], fresh)
        expect_error(binary, ft_fresh + ["--method", "chained", "--eps", "1e-6"], 4, ["--method exact can"], fresh)
        expect_error(binary, ft_fresh + ["--eps", 0], 2, ["--eps"], fresh)
        expect_error(binary, ft_fresh + ["--method", "fast", "--degree", 3], 3, ["--degree 3"], fresh)


@harness.test
def positions_extend_the_context(binary):
    with tempfile.TemporaryDirectory() as d:
        model, data, out = make_model(d), write_text(d), os.path.join(d, "out")
        ft = ["finetune", "--model", model, "--data", data, "--out", out, "--steps", 2, "--batch", 1,
              "--seq-len", 100, "--threads", 1, "--eval-every", 0, "--stop-after", 1]
        expect_error(binary, ft, 2, ["n_positions 64", "--positions 100"], out)
        expect_error(binary, ft + ["--positions", 32], 2, ["--positions must be in [64"], out)
        run_ok(binary, ft + ["--positions", 128])
        expect_error(binary, ft + ["--resume"], 3, ["n_positions 128", "same --positions"])
        run_ok(binary, ft + ["--resume", "--positions", 128])

        ev = ["eval", "--model", model, "--adapter", out, "--data", data, "--json", "--threads", 1]
        plain = json.loads(run_ok(binary, ev + ["--seq-len", 32])[0])
        extended = json.loads(run_ok(binary, ev + ["--seq-len", 32, "--positions", 128])[0])
        check(plain == extended, "positions below n_positions changed: %s vs %s" % (plain, extended))
        expect_error(binary, ev + ["--seq-len", 100], 2, ["--positions 100"])
        longer = json.loads(run_ok(binary, ev + ["--seq-len", 100, "--positions", 100])[0])
        check(longer["tokens"] == 1700 and 0 < longer["loss"] < 10, "eval at T = 100: %s" % longer)


@harness.test
def recompute_gives_identical_adapters(binary):
    with tempfile.TemporaryDirectory() as d:
        model, data = make_model(d), write_text(d)
        for method in (["--method", "exact"], ["--method", "fast", "--degree", 2]):
            outputs = {}
            for mode in ("always", "never"):
                out = os.path.join(d, "out-" + mode)
                run_ok(binary, ["finetune", "--model", model, "--data", data, "--out", out, "--steps", 3,
                                "--batch", 2, "--seq-len", 40, "--eval-every", 0, "--threads", 2,
                                "--targets", "all", "--recompute", mode] + method)
                with open(os.path.join(out, "adapter_model.safetensors"), "rb") as f:
                    adapter = f.read()
                with open(os.path.join(out, "train_log.csv")) as f:
                    losses = [row["loss"] for row in csv.DictReader(f)]
                outputs[mode] = (adapter, losses)
            check(outputs["always"] == outputs["never"], "%s: --recompute changed the run" % method)
        expect_error(binary, ["finetune", "--model", model, "--data", data, "--recompute", "sometimes"], 2,
                     ["--recompute"])


TIME = "/usr/bin/time"  # GNU time: the peak RSS of its own child (a fork of this Python
                       # process would report the interpreter's pages as well)


def peak_rss_mb(binary, args, d):
    report = os.path.join(d, "rss")
    rc, _, stderr = lfcase.run_lorafast(TIME, ["-f", "%M", "-o", report, binary] + args, timeout=300)
    check(rc == 0, "%s: %s" % (args, stderr.strip()[-500:]))
    with open(report) as f:
        return int(f.read().split()[-1]) / 1024.0  # KiB


@harness.test
def long_context_memory_is_linear(binary):
    if not os.access(TIME, os.X_OK):
        return "skipped: no %s" % TIME
    with tempfile.TemporaryDirectory() as d:
        model, data = make_model(d), os.path.join(d, "long.txt")
        with open(data, "w") as f:
            f.write(TEXT * 6)  # 10800 bytes: one window of 8193
        ft = ["finetune", "--model", model, "--data", data, "--out", os.path.join(d, "out"), "--steps", 1,
              "--batch", 1, "--seq-len", 8192, "--positions", 8192, "--eval-every", 0, "--val-fraction", 0,
              "--threads", 2]
        methods = (["--method", "exact"], ["--method", "fast", "--degree", 2])
        peaks = [peak_rss_mb(binary, ft + method, d) for method in methods]
        check(max(peaks) < 150, "peak RSS %s MB at T = 8192" % peaks)
        return "peak RSS exact %.0f MB, fast %.0f MB" % tuple(peaks)


if __name__ == "__main__":
    sys.exit(harness.main())
