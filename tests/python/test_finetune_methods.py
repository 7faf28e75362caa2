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
  the flag only beyond n_positions; --resume needs the same --positions.
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
                  and "--eps not enforced" in r["reason"] for r in rows[4:]), "fast rows %s" % rows[4:])
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


if __name__ == "__main__":
    sys.exit(harness.main())
