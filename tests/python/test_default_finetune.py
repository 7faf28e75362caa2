"""`lorafast finetune` with no arguments: the embedded default (INTERFACE.md).

Run in an empty directory with only a shorter schedule (--steps, --sample-tokens,
--threads 1: a contended second core makes OpenMP barriers spin)
so that it stays well under 30 s: it finds the shipped base model and corpus by
itself, prints a base-model sample before training and an adapted one after, and
writes lorafast-out/ with the PEFT adapter, train_log.csv and (with matplotlib)
loss_curve.png; `eval --json` on the fine-tuning corpus is lower with the adapter
than without. The shipped files (model, corpora, their README) are present.

Tolerance: 20 updates at the recipe's learning rate lower the corpus loss by
~0.4 nats (measured: 1.987 -> 1.603); the check asks for 0.05, several times the noise of a
mean over ~30 windows of a 4 KB text.
"""

import json
import os
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lfcase  # noqa: E402
from lfcase import check  # noqa: E402

harness = lfcase.Harness(__doc__)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "data", "lora_and_adam.txt")
MODEL = os.path.join(ROOT, "models", "default")


def run_ok(binary, args, cwd=None, timeout=300):
    rc, out, err = lfcase.run_lorafast(binary, args, timeout=timeout, cwd=cwd)
    check(rc == 0, "exit %d for %s: %s" % (rc, " ".join(map(str, args)), err.strip()[-800:]))
    return out, err


def has_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


@harness.test
def shipped_files_exist(binary):
    for path in ("data/README.md", "data/tinyshakespeare.txt", "data/lora_and_adam.txt", "models/default/config.json",
                 "models/default/model.safetensors", "models/default/README.md", "scripts/plot_loss.py"):
        check(os.path.isfile(os.path.join(ROOT, path)), "%s is missing" % path)
    size = os.path.getsize(os.path.join(MODEL, "model.safetensors"))
    check(size <= 10 << 20, "the default model is %d bytes, over 10 MiB" % size)
    with open(os.path.join(MODEL, "config.json")) as f:
        config = json.load(f)
    check(config["vocab_size"] == 256 and config["n_positions"] >= 128, "config.json %s" % config)
    return "model %.1f MB" % (size / 1e6)


@harness.test
def no_argument_run_trains_samples_and_plots(binary):
    with tempfile.TemporaryDirectory() as d:
        stdout, stderr = run_ok(binary, ["finetune", "--steps", 20, "--sample-tokens", 40, "--threads", 1], cwd=d)
        out = os.path.join(d, "lorafast-out")
        want = ["adapter_config.json", "adapter_model.safetensors", "attention_plan.csv", "checkpoint.safetensors",
                "train_log.csv"]
        if has_matplotlib():
            want.append("loss_curve.png")
        check(sorted(os.listdir(out)) == sorted(want), "lorafast-out: %s" % sorted(os.listdir(out)))
        base_at = stdout.find("sample from the base model")
        adapted_at = stdout.find("sample from the adapted model")
        check(0 <= base_at < stdout.find("steps 1-20 of 20") < adapted_at, "stdout %r" % stdout)
        check(stdout.count("  | LORA:") == 2, "samples do not start with the prompt: %r" % stdout)
        check("step 20/20" in stderr, "no progress display: %r" % stderr[-300:])
        with open(os.path.join(out, "train_log.csv")) as f:
            check(f.readline().startswith("step,loss,") and len(f.read().splitlines()) == 20, "train_log.csv")
        base = json.loads(run_ok(binary, ["eval", "--model", MODEL, "--data", CORPUS, "--json"])[0])
        tuned = json.loads(run_ok(binary, ["eval", "--model", MODEL, "--adapter", out, "--data", CORPUS,
                                           "--json"])[0])
        check(tuned["loss"] < base["loss"] - 0.05, "eval: adapter %r vs base %r" % (tuned, base))
        return "corpus loss %.3f -> %.3f" % (base["loss"], tuned["loss"])


@harness.test
def data_override_and_missing_model(binary):
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "text.txt")
        with open(data, "w") as f:
            f.write("LORA:\nThe loss goes down.\n\n" * 60)
        stdout, _ = run_ok(binary, ["finetune", "--data", data, "--steps", 2, "--sample-tokens", 0, "--threads", 1, "--out",
                                    os.path.join(d, "o")], cwd=d)
        check("corpus %s" % data in stdout and "sample from" not in stdout, "stdout %r" % stdout)
        rc, _, err = lfcase.run_lorafast(binary, ["finetune", "--model", os.path.join(d, "none"), "--steps", 1],
                                         cwd=d)
        check(rc == 3 and "none" in err and not os.path.exists(os.path.join(d, "lorafast-out")),
              "exit %d: %r" % (rc, err))


if __name__ == "__main__":
    sys.exit(harness.main())
