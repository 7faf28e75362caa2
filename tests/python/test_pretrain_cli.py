"""`lorafast pretrain` on tiny byte-level GPT-2 models.

- a short run: the loss falls from log(256), train_log.csv and the progress lines
  are written, and the model directory loads in `eval`, `generate`, `finetune`
  and the PyTorch oracle (gptcase.read_model_dir: config.json + model.safetensors
  with "transformer." names);
- the same seed and thread count give a byte-identical model, another seed not;
- three f64 updates (gradient accumulation, clipping, warmup, weight decay on the
  rank-2 tensors only, beta2) replayed with torch.optim.AdamW + clip_grad_norm_ +
  LambdaLR from the step-0 model on the same windows;
- Ctrl-C: the current update finishes, the model so far is saved, exit 130;
- bad flags and inputs: the right exit code, one `lorafast: error:` line, no output.

Tolerance model (DESIGN.md rule 5): the f64 replay's final weights agree to a
relative Frobenius error <= 1e-9. Gradients agree to ~1e-13 (the model-grad bound
is 1e-10); AdamW's normalised update changes by at most |dg| / eps = 1e-5 of a
relative gradient error, times lr (5e-3), so three updates move weights of
size ~0.02 by <= 1e-10 relative; a wrong term (decay on a bias, missing bias
correction, clip factor) is >= 1e-4.
"""

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import gptcase  # noqa: E402
import lfcase  # noqa: E402
from lfcase import check  # noqa: E402

harness = lfcase.Harness(__doc__)

TEXT = "to be, or not to be, that is the question. " * 40
TINY = ["--layers", 2, "--heads", 2, "--width", 16, "--seq-len", 16]


def write_text(d, text=TEXT, name="data.txt"):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def run_ok(binary, args, timeout=300):
    rc, out, err = lfcase.run_lorafast(binary, args, timeout=timeout)
    check(rc == 0, "exit %d for %s: %s" % (rc, " ".join(map(str, args)), err.strip()[-800:]))
    return out, err


@harness.test
def pretrain_loss_falls_and_model_loads(binary):
    with tempfile.TemporaryDirectory() as d:
        data, out = write_text(d), os.path.join(d, "model")
        stdout, stderr = run_ok(binary, ["pretrain", "--data", data, "--out", out, "--steps", 40, "--batch", 4,
                                         "--lr", 1e-2, "--warmup", 5, "--eval-every", 10, "--threads", 1] + TINY)
        check(sorted(os.listdir(out)) == ["config.json", "model.safetensors", "train_log.csv"], os.listdir(out))
        with open(os.path.join(out, "train_log.csv")) as f:
            lines = f.read().splitlines()
        header = lines[0].split(",")
        rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
        check([int(r["step"]) for r in rows] == list(range(1, 41)), "steps %s" % [r["step"] for r in rows])
        losses = [float(r["loss"]) for r in rows]
        # GPT-2's init gives logits ~0: the first loss is log(256) = 5.55 within 0.1.
        check(abs(losses[0] - math.log(256)) < 0.1, "first loss %.3f, want ~log(256)" % losses[0])
        check(np.mean(losses[-5:]) < 3.0, "loss %.3f -> %.3f" % (losses[0], np.mean(losses[-5:])))
        check("step 40/40" in stderr and "wrote" in stdout and "val loss" in stdout, "output %r / %r" % (stderr, stdout))
        config, tensors = gptcase.read_model_dir(out)
        check(config["model_type"] == "gpt2" and config["activation_function"] == "gelu_new"
              and config["n_positions"] == 16 and config["vocab_size"] == 256, "config.json %s" % config)
        check(set(lfcase.file_dtypes(os.path.join(out, "model.safetensors")).values()) == {"F32"}, "not F32")
        T = 16
        tokens = list(TEXT.encode())
        count = (len(tokens) - 1) // T
        windows = np.array([tokens[i * T:i * T + T + 1] for i in range(count)], dtype=np.int64)
        ref = gptcase.torch_loss_and_grads(config, tensors, {}, windows, base_grads=True)["loss"]
        doc = json.loads(run_ok(binary, ["eval", "--model", out, "--data", data, "--json", "--dtype", "f64"])[0])
        # The F32 weights read exactly into both; the f64 losses differ by summation order only.
        check(abs(doc["loss"] - ref) <= 1e-10 * ref, "eval %r vs torch %r" % (doc["loss"], ref))
        # The KV cache holds n_positions = 16: a 5-byte prompt leaves room for 12 tokens.
        text, _ = run_ok(binary, ["generate", "--model", out, "--prompt", "to be", "--tokens", 12, "--seed", 1])
        expect_error(binary, ["generate", "--model", out, "--prompt", "to be", "--tokens", 13], 2,
                     "needs 17 positions; the model has 16", os.path.join(d, "no-output"))
        check(text.startswith("to be") and len(text) >= 6, "generate %r" % text)
        run_ok(binary, ["finetune", "--model", out, "--data", data, "--out", os.path.join(d, "ft"), "--steps", 2,
                        "--seq-len", 16, "--batch", 2, "--threads", 1])
        return "loss %.2f -> %.2f, eval %.4f" % (losses[0], np.mean(losses[-5:]), doc["loss"])


@harness.test
def same_seed_same_model(binary):
    with tempfile.TemporaryDirectory() as d:
        data = write_text(d)
        blobs = {}
        for name, seed in (("a", 3), ("b", 3), ("c", 4)):
            out = os.path.join(d, name)
            run_ok(binary, ["pretrain", "--data", data, "--out", out, "--steps", 3, "--batch", 2, "--seed", seed,
                            "--threads", 1, "--eval-every", 0] + TINY)
            with open(os.path.join(out, "model.safetensors"), "rb") as f:
                blobs[name] = f.read()
        check(blobs["a"] == blobs["b"], "the same seed gave different models")
        check(blobs["a"] != blobs["c"], "another seed gave the same model")


@harness.test
def training_replays_in_torch_adamw(binary):
    with tempfile.TemporaryDirectory() as d:
        data = write_text(d)
        o = dict(steps=3, T=16, B=2, K=2, lr=5e-3, wd=0.1, beta2=0.95, warmup=1, floor=0.1, clip=0.5, seed=7)
        common = ["--data", data, "--batch", o["B"], "--grad-accum", o["K"], "--lr", o["lr"],
                  "--weight-decay", o["wd"], "--beta2", o["beta2"], "--warmup", o["warmup"], "--min-lr-ratio",
                  o["floor"], "--clip", o["clip"], "--seed", o["seed"], "--dtype", "f64", "--eval-every", 0] + TINY
        init, out = os.path.join(d, "init"), os.path.join(d, "out")
        run_ok(binary, ["pretrain", "--out", init, "--steps", 0] + common)
        run_ok(binary, ["pretrain", "--out", out, "--steps", o["steps"]] + common)
        config, start = gptcase.read_model_dir(init)
        _, got = gptcase.read_model_dir(out)
        check(set(lfcase.file_dtypes(os.path.join(out, "model.safetensors")).values()) == {"F64"}, "not F64")
        tokens = list(TEXT.encode())
        train = tokens[:int(math.floor(len(tokens) * 0.9))]
        names = sorted(start)
        params = {n: torch.tensor(start[n], requires_grad=True) for n in names}
        groups = [{"params": [params[n] for n in names if start[n].ndim == 2], "weight_decay": o["wd"]},
                  {"params": [params[n] for n in names if start[n].ndim != 2], "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=o["lr"], betas=(0.9, o["beta2"]), eps=1e-8)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: gptcase.lr_at(i + 1, o["lr"], o["warmup"], o["steps"], o["floor"]) / o["lr"])
        clipped = 0
        for step in range(1, o["steps"] + 1):
            current = {n: p.detach().numpy().copy() for n, p in params.items()}
            grads = {n: np.zeros_like(v) for n, v in current.items()}
            for micro in range(o["K"]):
                w = gptcase.sample_windows(train, o["T"], o["B"], o["seed"], step, micro)
                r = gptcase.torch_loss_and_grads(config, current, {}, w, base_grads=True)
                for n in names:
                    grads[n] += r[n] / o["K"]
            for n in names:
                params[n].grad = torch.tensor(grads[n])
            norm = float(torch.nn.utils.clip_grad_norm_(list(params.values()), o["clip"]))
            clipped += norm > o["clip"]
            opt.step()
            sched.step()
        check(clipped >= 1, "the replay never clipped; pick a smaller --clip")
        want = np.concatenate([params[n].detach().numpy().ravel() for n in names])
        have = np.concatenate([got[n].ravel() for n in names])
        moved = lfcase.rel_error(want, np.concatenate([start[n].ravel() for n in names]))
        err = lfcase.rel_error(have, want)
        check(err <= 1e-9, "weights after %d steps: rel err %.3e vs torch AdamW" % (o["steps"], err))
        return "rel err %.2e (weights moved by %.2e, %d clipped steps)" % (err, moved, clipped)


@harness.test
def ctrl_c_saves_the_model(binary):
    with tempfile.TemporaryDirectory() as d:
        data, out = write_text(d), os.path.join(d, "model")
        log = os.path.join(out, "train_log.csv")
        proc = subprocess.Popen([binary, "pretrain", "--data", data, "--out", out, "--steps", "1000000", "--batch",
                                 "2", "--threads", "1"] + [str(a) for a in TINY],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline and not (os.path.exists(log) and open(log).read().count("\n") >= 4):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        stderr = stderr.decode()
        check(proc.returncode == 130, "exit %d after SIGINT: %s" % (proc.returncode, stderr[-400:]))
        check("interrupted after step" in stderr, "stderr %r" % stderr[-400:])
        step = int(stderr.split("interrupted after step ")[1].split()[0])
        with open(log) as f:
            rows = f.read().splitlines()[1:]
        check(len(rows) == step >= 3, "log rows %d, reported step %d" % (len(rows), step))
        check(sorted(os.listdir(out)) == ["config.json", "model.safetensors", "train_log.csv"], os.listdir(out))
        run_ok(binary, ["eval", "--model", out, "--data", data, "--seq-len", 16])
        return "stopped after step %d" % step


def expect_error(binary, args, code, needle, absent):
    rc, stdout, stderr = lfcase.run_lorafast(binary, args)
    check(rc == code, "exit %d (want %d) for %s: %s" % (rc, code, " ".join(map(str, args)), stderr.strip()[-300:]))
    check(stderr.startswith("lorafast: error:") and stderr.count("\n") == 1, "stderr %r" % stderr)
    check(needle in stderr, "stderr %r lacks %r" % (stderr, needle))
    check(not os.path.exists(absent), "%s was created" % absent)


@harness.test
def bad_inputs_fail_cleanly(binary):
    with tempfile.TemporaryDirectory() as d:
        data, out = write_text(d), os.path.join(d, "out")
        base = ["pretrain", "--out", out, "--steps", 1, "--threads", 1]
        expect_error(binary, base + ["--data", data, "--heads", 3, "--width", 16], 2, "does not divide", out)
        expect_error(binary, base + ["--data", data, "--seq-len", 32, "--positions", 16], 2, "n_positions", out)
        expect_error(binary, base + ["--data", os.path.join(d, "missing.txt")], 3, "missing.txt", out)
        expect_error(binary, base + ["--data", write_text(d, "short", "short.txt")], 3, "short.txt", out)
        expect_error(binary, base + ["--data", data, "--lr", "-1"], 2, "--lr", out)
        expect_error(binary, ["pretrain", "--data", data], 2, "--out", out)


if __name__ == "__main__":
    sys.exit(harness.main())
