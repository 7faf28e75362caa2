"""`lorafast finetune`, `eval` and `generate` on a tiny random byte-level GPT-2 model.

- finetune on a repetitive text: the training loss falls; the output directory is
  a PEFT adapter that `eval` and `generate` load;
- `eval --json` against PyTorch float64 on the same windows (INTERFACE.md:
  consecutive windows of T + 1 bytes with stride T, the incomplete tail dropped),
  for the base model and with the trained adapter;
- three f64 updates (gradient accumulation, clipping, LoRA+, weight decay, warmup,
  frozen k rows) replayed with torch.optim.AdamW + clip_grad_norm_ + LambdaLR on
  the same windows (the sampler is counter-based SplitMix64, restated here);
- resume: N updates straight == K updates (--stop-after) + --resume, bit for bit;
- Ctrl-C: the current update finishes, a checkpoint is saved, exit 130, resumable;
- token-id data (--data-format uint16 / int32) on a 300-token vocabulary: finetune
  trains, `eval` matches PyTorch f64 on the same ids; ids >= vocab_size, a
  partial id, byte data for a non-byte model and a text sample prompt are refused;
- bad inputs: the right exit code, one `lorafast: error:` line and no partial output.

Tolerance model (DESIGN.md rule 5):
- f64 eval: relative loss error <= 1e-10, as test_gpt_vs_torch.py: the same
  function in IEEE double, differing only in summation order.
- f32 eval: <= 1e-5 relative (that file's f32 floor, ~100 f32 ulps): the loss is
  a mean of per-token log-sum-exps accumulated in double from f32 logits.
- f64 training replay: relative Frobenius error of the final adapters <= 1e-9.
  Gradients agree to ~1e-13 (the model-grad bound is 1e-10); AdamW's normalised
  update m / (sqrt(v) + eps) changes by at most |dg| / eps, and at step 1 the A
  gradients are exactly zero on both sides (B = 0), so three updates stay far
  below 1e-9; a wrong term (bias correction, LoRA+ group, clip factor) is >= 1e-3.
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

LAYERS, HEADS, D, V, P = 2, 2, 16, 256, 64
TEXT = "the quick brown fox jumps over the lazy dog. " * 40


def make_model(d, name="model", vocab=V, seed=0):
    """A random byte-level model dir (F64); wte scaled so the initial loss is O(log V)."""
    rng = np.random.default_rng(seed)
    config, t = gptcase.random_model(rng, LAYERS, HEADS, D, vocab, P)
    t["wte.weight"] = 0.2 * t["wte.weight"]
    path = os.path.join(d, name)
    gptcase.write_model_dir(path, config, t)
    return path, config, t


def write_text(d, text=TEXT, name="data.txt"):
    path = os.path.join(d, name)
    with open(path, "wb") as f:
        f.write(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def run_ok(binary, args, timeout=300):
    rc, out, err = lfcase.run_lorafast(binary, args, timeout=timeout)
    check(rc == 0, "exit %d for %s: %s" % (rc, " ".join(map(str, args)), err.strip()[-800:]))
    return out, err


def read_log(path):
    with open(path) as f:
        lines = f.read().splitlines()
    header = lines[0].split(",")
    return header, [dict(zip(header, line.split(","))) for line in lines[1:]]


def adapter_tensors(out):
    return lfcase.read_safetensors(os.path.join(out, "adapter_model.safetensors"))


# ---------------------------------------------------------------- PyTorch oracle

def windows(tokens, T):
    count = (len(tokens) - 1) // T
    return np.array([tokens[i * T:i * T + T + 1] for i in range(count)], dtype=np.int64)


def torch_eval(config, model, tokens, T, adapter=None, R=1, alpha=1.0, qkv="qkv"):
    """Mean CE over the eval windows in float64 (the base model: an adapter with B = 0)."""
    if adapter is None:
        adapter = {gptcase.peft_name(i, "attn.c_attn", "A"): np.zeros((1, D)) for i in range(LAYERS)}
        adapter.update({gptcase.peft_name(i, "attn.c_attn", "B"): np.zeros((3 * D, 1)) for i in range(LAYERS)})
    w = windows(tokens, T)
    return gptcase.torch_loss_and_grads(config, model, adapter, w, R, alpha, qkv=qkv)["loss"], w.size - len(w)


# ---------------------------------------------------------------- tests

@harness.test
def finetune_loss_falls_and_adapter_loads(binary):
    with tempfile.TemporaryDirectory() as d:
        model, _, _ = make_model(d)
        data, out = write_text(d), os.path.join(d, "out")
        stdout, stderr = run_ok(binary, ["finetune", "--model", model, "--data", data, "--out", out, "--steps", 40,
                                         "--seq-len", 32, "--batch", 4, "--lr", 3e-2, "--rank", 4,
                                         "--targets", "attn.c_attn", "mlp.c_fc", "--eval-every", 10, "--threads", 1])
        check(sorted(os.listdir(out)) == ["adapter_config.json", "adapter_model.safetensors", "attention_plan.csv",
                                          "checkpoint.safetensors", "train_log.csv"], "out: %s" % os.listdir(out))
        header, rows = read_log(os.path.join(out, "train_log.csv"))
        for col in ("step", "loss", "lr", "val_loss", "tokens_per_s"):
            check(col in header, "train_log.csv lacks %s: %s" % (col, header))
        check([int(r["step"]) for r in rows] == list(range(1, 41)), "steps %s" % [r["step"] for r in rows])
        losses = [float(r["loss"]) for r in rows]
        first, last = np.mean(losses[:5]), np.mean(losses[-5:])
        # From ~log(256) = 5.5 nats; 0.5 nats is several times the step-to-step noise.
        check(last < first - 0.5, "loss %.3f -> %.3f did not fall by 0.5 nats" % (first, last))
        vals = [float(r["val_loss"]) for r in rows if r["val_loss"]]
        check(len(vals) == 4 and vals[-1] < vals[0], "val losses %s" % vals)
        check("step 40/40" in stderr and "wrote" in stdout, "progress/summary: %r / %r" % (stderr[-200:], stdout))
        with open(os.path.join(out, "adapter_config.json")) as f:
            cfg = json.load(f)
        check(cfg["peft_type"] == "LORA" and cfg["r"] == 4 and cfg["fan_in_fan_out"] is True
              and sorted(cfg["target_modules"]) == ["attn.c_attn", "mlp.c_fc"]
              and cfg["base_model_name_or_path"] == model, "adapter_config.json %s" % cfg)
        base = json.loads(run_ok(binary, ["eval", "--model", model, "--data", data, "--seq-len", 32, "--json"])[0])
        tuned = json.loads(run_ok(binary, ["eval", "--model", model, "--adapter", out, "--data", data,
                                           "--seq-len", 32, "--json"])[0])
        check(tuned["loss"] < base["loss"] - 0.5, "eval: adapter %r vs base %r" % (tuned, base))
        text, _ = run_ok(binary, ["generate", "--model", model, "--adapter", out, "--prompt", "the quick",
                                  "--tokens", 30, "--seed", 5])
        check(text.startswith("the quick") and len(text.encode("latin-1", "replace")) >= 9, "generate %r" % text)
        return "loss %.2f -> %.2f, eval %.3f -> %.3f" % (first, last, base["loss"], tuned["loss"])


@harness.test
def eval_json_matches_torch_f64_and_f32(binary):
    with tempfile.TemporaryDirectory() as d:
        model, config, tensors = make_model(d, seed=3)
        T = 24
        text = bytes(np.random.default_rng(4).integers(0, 256, 5 * T + 1 + 7).astype(np.uint8))  # tail of 7 dropped
        data = write_text(d, text)
        tokens = list(text)
        rng = np.random.default_rng(5)
        targets = ("attn.c_attn", "mlp.c_proj")
        adapter = gptcase.random_adapter(rng, LAYERS, D, 2, targets, "qv")
        adir = os.path.join(d, "adapter")
        gptcase.write_adapter_dir(adir, adapter, 2, 3.0, targets, qkv="qv")
        notes = []
        for label, extra, ref_args in (("base", [], {}),
                                       ("adapter", ["--adapter", adir],
                                        dict(adapter=adapter, R=2, alpha=3.0, qkv="qv"))):
            ref, n = torch_eval(config, tensors, tokens, T, **ref_args)
            for dtype, bound in (("f64", 1e-10), ("f32", 1e-5)):
                doc = json.loads(run_ok(binary, ["eval", "--model", model, "--data", data, "--seq-len", T, "--json",
                                                 "--dtype", dtype] + extra)[0])
                check(sorted(doc) == ["loss", "tokens"], "json keys %s" % sorted(doc))
                check(doc["tokens"] == n == 5 * T, "tokens %r, want %d" % (doc["tokens"], 5 * T))
                err = abs(doc["loss"] - ref) / ref
                check(err <= bound, "%s %s: loss %r vs torch %r (rel %.2e > %.0e)" % (label, dtype, doc["loss"], ref,
                                                                                      err, bound))
                notes.append("%s/%s %.1e" % (label, dtype, err))
        human, _ = run_ok(binary, ["eval", "--model", model, "--data", data, "--seq-len", T])
        check("perplexity" in human and "120 tokens" in human, "human output %r" % human)
        return ", ".join(notes)


@harness.test
def training_replays_in_torch_adamw(binary):
    with tempfile.TemporaryDirectory() as d:
        model, config, tensors = make_model(d, seed=6)
        data = write_text(d)
        o = dict(steps=3, T=16, B=2, K=2, lr=5e-3, ratio=4.0, wd=0.1, warmup=1, floor=0.1, clip=0.05, seed=11,
                 R=2, alpha=4.0)
        common = ["--model", model, "--data", data, "--seq-len", o["T"], "--batch", o["B"], "--grad-accum", o["K"],
                  "--lr", o["lr"], "--lora-plus-ratio", o["ratio"], "--weight-decay", o["wd"], "--warmup",
                  o["warmup"], "--min-lr-ratio", o["floor"], "--clip", o["clip"], "--seed", o["seed"], "--rank",
                  o["R"], "--alpha", o["alpha"], "--qkv", "qv", "--targets", "attn.c_attn", "mlp.c_proj",
                  "--dtype", "f64", "--eval-every", 0]
        init, out = os.path.join(d, "init"), os.path.join(d, "out")
        run_ok(binary, ["finetune", "--out", init, "--steps", 0] + common)
        run_ok(binary, ["finetune", "--out", out, "--steps", o["steps"]] + common)
        start, got = adapter_tensors(init), adapter_tensors(out)
        tokens = list(TEXT.encode())
        train = tokens[:int(math.floor(len(tokens) * 0.9))]
        names = sorted(start)
        params = {n: torch.tensor(start[n], dtype=torch.float64, requires_grad=True) for n in names}
        groups = [{"params": [params[n] for n in names if "lora_A" in n], "lr": o["lr"]},
                  {"params": [params[n] for n in names if "lora_B" in n], "lr": o["lr"] * o["ratio"]}]
        opt = torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8, weight_decay=o["wd"])
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: gptcase.lr_at(i + 1, o["lr"], o["warmup"], o["steps"], o["floor"]) / o["lr"])
        clipped = 0
        for step in range(1, o["steps"] + 1):
            current = {n: p.detach().numpy().copy() for n, p in params.items()}
            grads = {n: np.zeros_like(v) for n, v in current.items()}
            for micro in range(o["K"]):
                w = gptcase.sample_windows(train, o["T"], o["B"], o["seed"], step, micro)
                r = gptcase.torch_loss_and_grads(config, tensors, current, w, o["R"], o["alpha"], qkv="qv")
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
        have = np.concatenate([np.asarray(got[n], dtype=np.float64).ravel() for n in names])
        moved = lfcase.rel_error(want, np.concatenate([start[n].ravel() for n in names]))
        err = lfcase.rel_error(have, want)
        check(err <= 1e-9, "adapter after %d steps: rel err %.3e vs torch AdamW" % (o["steps"], err))
        kb = got[gptcase.peft_name(0, "attn.c_attn", "B")][D:2 * D]
        check(np.all(kb == 0), "frozen k rows of c_attn B moved")
        return "rel err %.2e (adapter moved by %.2e, %d clipped steps)" % (err, moved, clipped)


@harness.test
def resume_equals_straight_run(binary):
    with tempfile.TemporaryDirectory() as d:
        model, _, _ = make_model(d)
        data = write_text(d)
        common = ["finetune", "--model", model, "--data", data, "--steps", 8, "--seq-len", 16, "--batch", 3,
                  "--grad-accum", 2, "--lr", 3e-3, "--warmup", 2, "--lora-plus-ratio", 8, "--eval-every", 4,
                  "--save-every", 2, "--threads", 2]
        a, b = os.path.join(d, "a"), os.path.join(d, "b")
        run_ok(binary, common + ["--out", a])
        _, err = run_ok(binary, common + ["--out", b, "--stop-after", 3])
        check("stopped as asked" in err and "after step 3 of 8" in err, "stderr %r" % err[-300:])
        _, rows = read_log(os.path.join(b, "train_log.csv"))
        check(len(rows) == 3, "log after --stop-after 3 has %d rows" % len(rows))
        run_ok(binary, ["finetune", "--model", model, "--data", data, "--out", b, "--resume", "--threads", 2])
        ta, tb = adapter_tensors(a), adapter_tensors(b)
        check(sorted(ta) == sorted(tb), "tensor names differ")
        for n in ta:
            check(np.array_equal(ta[n], tb[n]), "%s differs after resume" % n)
        la, lb = read_log(os.path.join(a, "train_log.csv"))[1], read_log(os.path.join(b, "train_log.csv"))[1]
        check([(r["step"], r["loss"], r["val_loss"]) for r in la] == [(r["step"], r["loss"], r["val_loss"]) for r in lb],
              "train_log.csv losses differ")
        # A second resume of a finished run trains nothing and keeps the adapter.
        out, _ = run_ok(binary, ["finetune", "--model", model, "--data", data, "--out", b, "--resume"])
        check("nothing to train" in out, "stdout %r" % out)
        return "8 steps == 3 + resume 5, bit for bit"


@harness.test
def ctrl_c_saves_a_checkpoint(binary):
    with tempfile.TemporaryDirectory() as d:
        model, _, _ = make_model(d)
        data, out = write_text(d), os.path.join(d, "out")
        log = os.path.join(out, "train_log.csv")
        proc = subprocess.Popen([binary, "finetune", "--model", model, "--data", data, "--out", out, "--steps",
                                 "1000000", "--seq-len", "32", "--batch", "4", "--save-every", "0", "--threads", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline and not (os.path.exists(log) and open(log).read().count("\n") >= 4):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        stderr = stderr.decode()
        check(proc.returncode == 130, "exit %d after SIGINT: %s" % (proc.returncode, stderr[-400:]))
        check("interrupted after step" in stderr and "--resume" in stderr, "stderr %r" % stderr[-400:])
        step = int(stderr.split("interrupted after step ")[1].split()[0])
        _, meta = lfcase.read_safetensors(os.path.join(out, "checkpoint.safetensors"), with_metadata=True)
        saved = json.loads(meta["lorafast.checkpoint"])["step"]
        _, rows = read_log(log)
        check(saved == step == len(rows) and step >= 3, "checkpoint step %d, reported %d, log rows %d" %
              (saved, step, len(rows)))
        check(not [f for f in os.listdir(out) if f.startswith(".")], "temporary files left: %s" % os.listdir(out))
        run_ok(binary, ["eval", "--model", model, "--adapter", out, "--data", data, "--seq-len", 32])
        run_ok(binary, ["finetune", "--model", model, "--data", data, "--out", out, "--resume",
                        "--stop-after", step + 2])
        _, rows = read_log(log)
        check(len(rows) == step + 2, "resumed log has %d rows, want %d" % (len(rows), step + 2))
        return "stopped after step %d" % step


def expect_error(binary, args, code, needle, absent=None):
    rc, stdout, stderr = lfcase.run_lorafast(binary, args)
    check(rc == code, "exit %d (want %d) for %s: %s" % (rc, code, " ".join(map(str, args[:1])), stderr.strip()[-300:]))
    check(stderr.startswith("lorafast: error:") and stderr.count("\n") == 1, "stderr %r" % stderr)
    check("`" not in stderr, "stderr %r names a library parameter, not its flag" % stderr)
    check(needle in stderr, "stderr %r lacks %r" % (stderr, needle))
    if absent is not None:
        check(not os.path.exists(absent), "%s was created" % absent)


@harness.test
def bad_inputs_fail_cleanly(binary):
    with tempfile.TemporaryDirectory() as d:
        model, _, _ = make_model(d)
        wide, _, _ = make_model(d, "wide", vocab=300)
        data = write_text(d)
        out = os.path.join(d, "out")
        ft0 = ["finetune", "--model", model, "--out", out, "--steps", 2, "--batch", 2, "--threads", 1]
        ft = ft0 + ["--seq-len", 16]
        expect_error(binary, ["finetune", "--model", os.path.join(d, "nomodel"), "--data", data, "--out", out], 3,
                     "nomodel", out)
        expect_error(binary, ft + ["--data", os.path.join(d, "missing.txt")], 3, "missing.txt", out)
        expect_error(binary, ft + ["--data", write_text(d, "short", "short.txt")], 3, "short.txt", out)
        expect_error(binary, ft + ["--data", write_text(d, "", "empty.txt")], 3, "empty", out)
        expect_error(binary, ft0 + ["--data", data, "--seq-len", 65], 2, "n_positions", out)
        expect_error(binary, ft + ["--data", data, "--method", "fast"], 4, "--method exact", out)
        expect_error(binary, ft + ["--data", data, "--targets", "c_proj"], 2, "c_proj", out)
        expect_error(binary, ft + ["--data", data, "--lr", "-1"], 2, "--lr", out)
        expect_error(binary, ft + ["--data", data, "--resume"], 3, "no checkpoint to resume", out)
        expect_error(binary, ["finetune", "--model", wide, "--data", data, "--out", out], 4, "tokenizer", out)
        expect_error(binary, ["eval", "--model", wide, "--data", data], 4, "tokenizer")
        expect_error(binary, ["generate", "--model", wide, "--prompt", "x"], 4, "tokenizer")
        expect_error(binary, ["generate", "--model", model, "--prompt", ""], 2, "--prompt")
        expect_error(binary, ["eval", "--model", model, "--data", write_text(d, "abc", "abc.txt"), "--seq-len", 8], 3,
                     "abc.txt")
        # A trained run, then corrupt / mismatched checkpoints: exit 3 and nothing rewritten.
        run_ok(binary, ft + ["--data", data])
        before = {f: open(os.path.join(out, f), "rb").read() for f in os.listdir(out)}
        other = write_text(d, TEXT.upper(), "other.txt")
        expect_error(binary, ft + ["--data", other, "--resume"], 3, "not the data the checkpoint")
        expect_error(binary, ft + ["--data", data, "--resume", "--rank", 4], 3, "trained with --rank 8, not 4")
        expect_error(binary, ft + ["--data", data, "--resume", "--dtype", "f64"], 3, "--dtype f32")
        expect_error(binary, ["finetune", "--model", wide, "--data", data, "--out", out, "--resume"], 4, "tokenizer")
        ckpt = os.path.join(out, "checkpoint.safetensors")
        with open(ckpt, "r+b") as f:
            f.truncate(len(before["checkpoint.safetensors"]) - 9)
        expect_error(binary, ft + ["--data", data, "--resume"], 3, "checkpoint.safetensors")
        after = {f: open(os.path.join(out, f), "rb").read() for f in os.listdir(out)}
        check(sorted(after) == sorted(before), "files changed: %s" % sorted(after))
        for f in before:
            if f != "checkpoint.safetensors":
                check(after[f] == before[f], "%s was rewritten by a failed resume" % f)
        with open(os.path.join(out, "adapter_model.safetensors"), "r+b") as f:
            f.truncate(100)
        expect_error(binary, ["eval", "--model", model, "--adapter", out, "--data", data], 3,
                     "adapter_model.safetensors")


@harness.test
def token_id_data_trains_and_evals(binary):
    with tempfile.TemporaryDirectory() as d:
        model, config, tensors = make_model(d, "wide", vocab=300, seed=7)
        T = 16
        ids = np.tile(np.random.default_rng(8).integers(0, 300, 12), 40)  # a repeated phrase: learnable
        files = {"uint16": ids.astype("<u2"), "int32": ids.astype("<i4")}
        for fmt, arr in files.items():
            files[fmt] = write_text(d, arr.tobytes(), "ids.%s" % fmt)
        out = os.path.join(d, "out")
        notes = []
        for fmt, data in files.items():
            doc = json.loads(run_ok(binary, ["eval", "--model", model, "--data", data, "--data-format", fmt,
                                             "--seq-len", T, "--json", "--dtype", "f64"])[0])
            ref, n = torch_eval(config, tensors, ids.tolist(), T)
            err = abs(doc["loss"] - ref) / ref
            # As eval_json_matches_torch_f64_and_f32: f64, summation order only.
            check(doc["tokens"] == n and err <= 1e-10, "%s eval %r vs torch %r (rel %.1e)" % (fmt, doc, ref, err))
            notes.append("%s eval rel %.0e" % (fmt, err))
        run_ok(binary, ["finetune", "--model", model, "--data", files["uint16"], "--data-format", "uint16", "--out",
                        out, "--steps", 40, "--seq-len", T, "--batch", 4, "--lr", 3e-2, "--rank", 4, "--targets",
                        "attn.c_attn", "mlp.c_fc", "--eval-every", 0, "--threads", 1])
        losses = [float(r["loss"]) for r in read_log(os.path.join(out, "train_log.csv"))[1]]
        # From ~log(300) = 5.7 nats on a 12-token phrase: 0.5 nats is far above the noise.
        check(np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5, "loss %s did not fall" % losses[::5])
        tuned = json.loads(run_ok(binary, ["eval", "--model", model, "--adapter", out, "--data", files["int32"],
                                           "--data-format", "int32", "--seq-len", T, "--json"])[0])
        notes.append("loss %.2f -> %.2f, eval with adapter %.2f" % (losses[0], losses[-1], tuned["loss"]))

        big = write_text(d, np.array([1, 2, 300, 4], "<u2").tobytes(), "big.bin")
        odd = write_text(d, b"\x01\x00\x02", "odd.bin")
        neg = write_text(d, np.array([1, -1], "<i4").tobytes(), "neg.bin")
        bad = os.path.join(d, "bad")
        ft = ["finetune", "--model", model, "--out", bad, "--seq-len", 2, "--steps", 1]
        expect_error(binary, ft + ["--data", big, "--data-format", "uint16"], 3, "big.bin: token 2 is 300, outside "
                     "the model's vocabulary [0, 300)", bad)
        expect_error(binary, ft + ["--data", odd, "--data-format", "uint16"], 3, "not a whole number of 2-byte", bad)
        expect_error(binary, ft + ["--data", neg, "--data-format", "int32"], 3, "token 1 is -1", bad)
        expect_error(binary, ft + ["--data", files["uint16"]], 4, "--data-format uint16", bad)
        expect_error(binary, ft + ["--data", files["uint16"], "--data-format", "uint16", "--sample-prompt", "hi"], 2,
                     "--sample-prompt", bad)
        expect_error(binary, ft + ["--data", files["uint16"], "--data-format", "utf8"], 2, "--data-format", bad)
        expect_error(binary, ["eval", "--model", model, "--data", big, "--data-format", "uint16"], 3, "token 2 is 300")
        return ", ".join(notes)


@harness.test
def generate_is_seeded_and_streams(binary):
    with tempfile.TemporaryDirectory() as d:
        model, _, _ = make_model(d)
        args = ["generate", "--model", model, "--prompt", "ab", "--tokens", 25, "--threads", 1, "--seed", 9,
                "--top-k", 20, "--temperature", 0.8]
        proc = subprocess.run([binary] + [str(a) for a in args + ["--no-echo"]], capture_output=True, timeout=60)
        check(proc.returncode == 0 and len(proc.stdout) == 25, "rc %d, %d bytes" % (proc.returncode, len(proc.stdout)))
        again = subprocess.run([binary] + [str(a) for a in args], capture_output=True, timeout=60).stdout
        check(again == b"ab" + proc.stdout, "same seed gave other bytes")
        other = subprocess.run([binary] + [str(a) if a != 9 else "10" for a in args], capture_output=True,
                               timeout=60).stdout
        check(other != again, "another seed gave the same bytes")
        greedy = [subprocess.run([binary, "generate", "--model", model, "--prompt", "ab", "--tokens", "10",
                                  "--temperature", "0", "--threads", "1", "--seed", str(s)], capture_output=True, timeout=60).stdout
                  for s in (1, 2)]
        check(greedy[0] == greedy[1] and len(greedy[0]) == 12, "greedy output depends on the seed")


if __name__ == "__main__":
    sys.exit(harness.main())
