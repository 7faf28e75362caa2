#!/usr/bin/env python3
"""LoRA fine-tuning throughput and peak memory: `lorafast finetune` vs PyTorch eager.

A GPT-2-124M-shaped model with random weights (12 layers, 12 heads, width 768,
n_positions 1024, vocab 50257) trains on random uint16 token ids (--data-format
uint16) at --seq-len 1024: LoRA rank 8 (alpha 8) on attn.c_attn, AdamW on the
adapters, clip 1, float32. bench/torch_gpt_train.py runs the same model file, token
file and training windows in PyTorch eager. Each side is one process (peak RSS from
wait4 is that process's), run one after the other on the same thread count with
OMP_WAIT_POLICY=passive; the first --warmup updates are not timed. Step 1's loss
must agree between the sides (same model, same windows, B = 0 on both), which
validates that both train the same problem before anything is reported.
tokens/s is from the fastest round's median timed update (forward, backward, clip,
AdamW); loadavg_during is the highest 1-minute load average sampled (every 2 s)
during that side's runs, the host's own load included (2 while one side runs).

Writes bench/results/gpt_train_vs_torch.{csv,json,png} and prints a markdown table.

--dtype bf16 runs the bf16 comparison of llama_train_vs_torch.py on this model (the
shared flow of train_sides.py; files gpt_train_vs_torch_bf16.*): lorafast `finetune
--dtype bf16` and f32, and transformers + PEFT (bench/torch_llama_train.py reads this
model directory as GPT2LMHeadModel; PEFT adapts the Conv1D attn.c_attn with
fan_in_fan_out) sdpa and eager, under bf16 autocast and loaded in bf16; step-1 losses
within LOSS_AGREEMENT_BF16 of lorafast f32, the roofline at the same-run bf16 peak.
Both lorafast sides run torch_llama_train.py's constant learning rate (--lr 2e-4
--warmup 0 --alpha rank), which the f32 comparison's default schedule does not.

    python3 bench/gpt_train_vs_torch.py              # the 124M shape, seq-len 1024, 2 threads
    python3 bench/gpt_train_vs_torch.py --quick      # a tiny model (smoke test, seconds)
    python3 bench/gpt_train_vs_torch.py --replot     # redraw the PNG from the JSON
    python3 bench/gpt_train_vs_torch.py --dtype bf16 # the bf16 sides (also with --quick, --replot, --compile)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))
sys.path.insert(0, str(HERE))
import gptcase  # noqa: E402
import lfbench  # noqa: E402

NAME = "gpt_train_vs_torch"
TIME = "/usr/bin/time"  # GNU time (Debian: time)
COLUMNS = ["side", "layers", "heads", "width", "vocab", "seq_len", "batch", "threads", "timed_steps",
           "tokens_per_s", "step_s", "peak_rss_mb", "speedup", "memory_ratio", "step1_loss", "loadavg_during",
           "note"]
# Step 1 trains from B = 0 on both sides, so its loss is the base model's on the same
# windows: f32 on both sides, differing only in summation order; 1e-4 relative is
# ~100x that noise and far below any real mismatch (a wrong shape or window: O(1)).
LOSS_AGREEMENT = 1e-4
# With bf16, step 1's loss carries bf16 rounding: every product's operands rounded
# to 8 significant bits (unit roundoff u = 2^-8), on the bf16-loaded PyTorch sides the
# residual stream and the logits stored in bf16 too. Each token's loss moves by about
# u times a logit (random signs) and the mean over T tokens averages that down:
# measured on the --quick Llama and GPT-2 models, every bf16 side within 1e-7..2e-5
# relative of lorafast f32 on the same windows. 2^-10 (~1e-3) leaves 50x room for the full-size
# model's longer sums, and still rejects a different problem: the --quick model on
# another seed's windows moves by 2.5e-3..3.6e-3 (a random model's loss is close to
# log V on any window, so that margin is narrow; the f32 mode's 1e-4 is the tight check
# that the sides sample the same windows, and bf16 mode reuses the same code paths).
LOSS_AGREEMENT_BF16 = 2 ** -10


def check_step1_losses(step1, bound, anchor=None):
    """{side: |step-1 loss - anchor's| / anchor's} for every side but the anchor (the
    first side unless named); exits if any exceeds bound. Step 1 trains from B = 0,
    so it is the base model's loss on the same windows: a wrong shape, window or
    weight file shows here before anything is timed."""
    anchor = anchor or next(iter(step1))
    rels = {side: abs(step1[anchor] - v) / abs(v) for side, v in step1.items() if side != anchor}
    for side, rel in rels.items():
        if rel > bound:
            sys.exit(f"step-1 losses differ: {anchor} {step1[anchor]!r}, {side} {step1[side]!r} (rel {rel:.1e} > "
                     f"{bound:g}): the sides are not training the same problem")
    print("step-1 losses agree: " + ", ".join(f"{s} {v:.8f}" for s, v in step1.items())
          + " (worst rel %.1e)" % max(rels.values()))
    return rels


def make_inputs(args, work):
    """The model directory and token file for the shape, generated once into `work`."""
    key = f"L{args.layers}_H{args.heads}_D{args.width}_V{args.vocab}_P{args.positions}_s{args.seed}"
    model, data = work / key / "model", work / key / "ids.uint16"
    if not (model / "model.safetensors").exists():
        lfbench.progress(f"generating the random model {key} in {work}")
        rng = np.random.default_rng(args.seed)
        config, t = gptcase.random_model(rng, args.layers, args.heads, args.width, args.vocab, args.positions)
        t["wte.weight"] *= 0.02  # GPT-2's init scale: the initial loss is about log V
        gptcase.write_model_dir(str(model), config, t, dtype=np.float32)
    if not data.exists():
        rng = np.random.default_rng(args.seed + 1)
        ids = rng.integers(0, args.vocab, max(1 << 16, 4 * (args.seq_len + 1)))
        ids.astype("<u2").tofile(data)
    return model, data


class LoadSampler:
    """The 1-minute load average sampled every 2 s while a side runs."""

    def __init__(self):
        self.samples, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(2.0):
            self.samples.append(os.getloadavg()[0])

    def stop(self):
        self._stop.set()
        self._thread.join()
        return max(self.samples) if self.samples else os.getloadavg()[0]


def run_measured(cmd, env, scratch):
    """(stdout, peak RSS in MiB, max load average) of one run of cmd. The peak comes
    from GNU time (wait4 of its own child): a child forked from this Python process
    would report at least this process's RSS (Linux keeps the pre-exec peak)."""
    rss_file = Path(scratch) / "peak_rss_kib"
    load = LoadSampler()
    proc = subprocess.run([TIME, "-f", "%M", "-o", str(rss_file)] + [str(c) for c in cmd], capture_output=True,
                          text=True, env=env)
    peak_load = load.stop()
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stderr[-2000:]}")
    return proc.stdout, int(rss_file.read_text().split()[-1]) / 1024.0, peak_load


def ours(args, model, data, env, work, extra=()):
    """`lorafast finetune` on the shape; `extra`: more flags (the Llama benchmark's targets)."""
    out = work / "finetune-out"
    cmd = [args.lorafast, "finetune", "--model", model, "--data", data, "--data-format", "uint16", "--out", out,
           "--seq-len", args.seq_len, "--batch", args.batch, "--steps", args.warmup + args.steps, "--rank", args.rank,
           "--eval-every", 0, "--save-every", 0, "--val-fraction", 0, "--method", args.method,
           "--threads", args.threads, *extra]
    _, rss, load = run_measured(cmd, env, work)
    lines = (out / "train_log.csv").read_text().splitlines()
    header = lines[0].split(",")
    log = [dict(zip(header, line.split(","))) for line in lines[1:]]
    seconds = [float(r["step_seconds"]) for r in log]
    return {"seconds": seconds, "losses": [float(r["loss"]) for r in log], "rss_mb": rss, "loadavg": load,
            "command": " ".join(map(str, cmd))}


def pytorch(args, model, data, env, work, script=HERE / "torch_gpt_train.py", extra=()):
    """The PyTorch side: `script` on the same model, tokens and windows, one JSON line out."""
    cmd = [sys.executable, script, "--model", model, "--data", data, "--seq-len", args.seq_len,
           "--batch", args.batch, "--steps", args.warmup + args.steps, "--rank", args.rank,
           "--threads", args.threads, *extra]
    out, rss, load = run_measured(cmd, env, work)
    res = json.loads(out)
    return dict(res, rss_mb=rss, loadavg=load, command=" ".join(map(str, cmd)))


def summarise(args, side, runs):
    """One CSV row from a side's rounds: the fastest round's median timed step."""
    tokens = args.batch * args.seq_len
    medians = [statistics.median(r["seconds"][args.warmup:]) for r in runs]
    best = min(range(len(runs)), key=lambda i: medians[i])
    return {"side": side, "layers": args.layers, "heads": args.heads, "width": args.width, "vocab": args.vocab,
            "seq_len": args.seq_len, "batch": args.batch, "threads": args.threads, "timed_steps": args.steps,
            "tokens_per_s": tokens / medians[best], "step_s": medians[best],
            "peak_rss_mb": max(r["rss_mb"] for r in runs), "step1_loss": runs[best]["losses"][0],
            "loadavg_during": max(r["loadavg"] for r in runs), "note": ""}


def fmt(v, spec):
    return "" if v is None or v == "" else format(v, spec)


def write_csv(path, rows, columns=COLUMNS):
    specs = {"tokens_per_s": ".1f", "step_s": ".3f", "peak_rss_mb": ".0f", "speedup": ".2f", "memory_ratio": ".2f",
             "step1_loss": ".6f", "loadavg_during": ".2f"}
    lfbench.write_csv(path, [{c: fmt(r.get(c), specs[c]) if c in specs else r.get(c) for c in columns}
                             for r in rows], columns)


def nominal_gflop_per_step(args):
    """GFLOP of one update: every frozen linear layer (12 D^2 weights a block) and the LM
    head forward (2 FLOP per weight per token) and back to its input (the same again;
    the first block's c_attn input gradient is not needed), plus exact attention at
    14 T^2 E per head (half: causal). LoRA's products, biases and the elementwise work
    are left out."""
    tokens, d = args.batch * args.seq_len, args.width
    linear = 2 * tokens * (2 * (args.layers * 12 * d * d + args.vocab * d) - 3 * d * d)
    attention = args.layers * args.batch * args.heads * 14 * args.seq_len ** 2 * (d // args.heads) / 2
    return (linear + attention) / 1e9


def bf16_family():
    """GPT-2 as a family of train_sides.py (imported here: train_sides imports this module)."""
    import train_sides
    return train_sides, train_sides.Family(
        name=NAME, script=f"{NAME}.py", columns=COLUMNS, targets=["attn.c_attn"], make_inputs=make_inputs,
        nominal_gflop_per_step=nominal_gflop_per_step, title=lambda row, settings: "GPT-2 LoRA fine-tuning")


def markdown(rows):
    ours_row, torch_row = rows
    out = ["| | tokens/s | step (s) | peak RSS (GiB) | load avg during |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['side']} | {r['tokens_per_s']:.0f} | {r['step_s']:.2f} | {r['peak_rss_mb'] / 1024:.2f} "
                   f"| {r['loadavg_during']:.1f} |")
    out.append(f"| **ratio** | **{ours_row['speedup']:.2f}×** | | **{1 / ours_row['memory_ratio']:.2f}× less** | |")
    return "\n".join(out)


def bar_panels(axes, rows, colors):
    """Each side's tokens/s and peak RSS as labelled bars on two axes."""
    for ax, key, scale, label in ((axes[0], "tokens_per_s", 1, "training tokens/s (higher is better)"),
                                  (axes[1], "peak_rss_mb", 1 / 1024, "peak RSS, GiB (lower is better)")):
        vals = [float(r[key]) * scale for r in rows]
        bars = ax.bar([r["side"] for r in rows], vals, color=colors[:len(rows)])
        for b, v in zip(bars, vals):
            ax.annotate(f"{v:.0f}" if scale == 1 else f"{v:.2f}", (b.get_x() + b.get_width() / 2, v),
                        ha="center", va="bottom", fontsize=10)
        ax.set_ylabel(label)
        ax.set_ylim(0, max(vals) * 1.18)
        ax.grid(True, axis="y", alpha=0.3)


def plot(path, record):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = record["rows"]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4.6))
    bar_panels((ax_t, ax_m), rows, ["tab:blue", "tab:gray"])
    o = rows[0]
    ax_t.set_title(f"{float(o['speedup']):.2f}× PyTorch eager")
    ax_m.set_title(f"{1 / float(o['memory_ratio']):.2f}× less memory")
    m = record["machine"]
    fig.suptitle(f"LoRA fine-tuning (r={record['settings']['rank']} on attn.c_attn, AdamW, f32): "
                 f"{o['layers']} layers, width {o['width']}, vocab {o['vocab']}, T={o['seq_len']}, "
                 f"batch {o['batch']}, {o['threads']} threads", fontsize=10)
    fig.text(0.5, 0.01, f"{m['cpu']}, OMP_WAIT_POLICY={m['OMP_WAIT_POLICY']}, PyTorch {m.get('torch')}, "
                        f"{record['date']}, load avg during ≤ {max(float(r['loadavg_during']) for r in rows):.1f}",
             ha="center", fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lorafast", default=str(lfbench.DEFAULT_BINARY), help="path to the lorafast binary")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4, help="timed updates per side (after --warmup)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed first updates")
    ap.add_argument("--rounds", type=int, default=1, help="alternate both sides this many times, keep the best")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--positions", type=int, default=1024)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--method", default="exact", help="lorafast's attention method")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32",
                    help="bf16: lorafast --dtype bf16 (and f32) against transformers + PEFT under bf16 autocast and "
                         "loaded in bf16; results in gpt_train_vs_torch_bf16.*")
    ap.add_argument("--compile", action="store_true",
                    help="--dtype bf16: add torch.compile'd transformers sdpa sides (minutes of compilation each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="a tiny model (2 layers, width 64, vocab 512, T=128)")
    ap.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON of the last run")
    ap.add_argument("--work-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "lorafast-gpt-bench"),
                    help="where the generated model and token file are cached")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    args = ap.parse_args()
    if args.quick:
        args.layers, args.heads, args.width, args.vocab, args.positions = 2, 2, 64, 512, 128
        args.seq_len, args.steps = min(args.seq_len, 128), min(args.steps, 2)
    if args.compile and (args.dtype != "bf16" or args.warmup < 1):
        sys.exit("--compile needs --dtype bf16 and --warmup >= 1 (the compilation happens in the first update)")
    return args


def main():
    args = parse_args()
    if args.dtype == "bf16":
        train_sides, family = bf16_family()
        return train_sides.main(args, family)
    out = Path(args.out_dir)
    if args.replot:
        record = json.loads((out / f"{NAME}.json").read_text())
        plot(out / f"{NAME}.png", record)
        print(markdown(record["rows"]))
        return
    if not os.access(args.lorafast, os.X_OK):
        sys.exit(f"no lorafast binary at {args.lorafast} (build it, or pass --lorafast)")
    if not os.access(TIME, os.X_OK):
        sys.exit(f"{TIME} (GNU time, Debian package 'time') is needed for the peak RSS")
    lf = lfbench.Lorafast(args.lorafast, args.threads, omp_wait_policy="passive")
    prov = lfbench.Provenance(f"{NAME}.py", args, lf)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    model, data = make_inputs(args, work)

    runs = {"lorafast": [], "PyTorch eager": []}
    for r in range(args.rounds):
        lfbench.progress(f"round {r + 1}/{args.rounds}: lorafast finetune")
        runs["lorafast"].append(ours(args, model, data, lf.env, lf.tmp))
        lfbench.progress(f"round {r + 1}/{args.rounds}: PyTorch eager")
        runs["PyTorch eager"].append(pytorch(args, model, data, lf.env, lf.tmp))
    rows = [summarise(args, side, rs) for side, rs in runs.items()]
    o, t = rows
    o["speedup"] = o["tokens_per_s"] / t["tokens_per_s"]
    o["memory_ratio"] = o["peak_rss_mb"] / t["peak_rss_mb"]
    rel = abs(o["step1_loss"] - t["step1_loss"]) / abs(t["step1_loss"])
    if rel > LOSS_AGREEMENT:
        sys.exit(f"step-1 losses differ: lorafast {o['step1_loss']!r}, PyTorch {t['step1_loss']!r} (rel {rel:.1e} > "
                 f"{LOSS_AGREEMENT:g}): the two sides are not training the same problem")
    o["note"] = f"step-1 loss agrees with PyTorch to {rel:.1e} relative"

    import torch
    record = prov.finish(rows=rows, runs=runs, step1_loss_rel_diff=rel,
                         timing="median step time of the timed updates (forward, backward, clip, AdamW), best round")
    record["machine"]["torch"] = torch.__version__
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / f"{NAME}.csv", rows)
    lfbench.write_json(out / f"{NAME}.json", record)
    plot(out / f"{NAME}.png", record)
    m = record["machine"]
    print(f"CPU: {m['cpu']}, {args.threads} threads, OMP_WAIT_POLICY=passive, OpenBLAS "
          f"{m.get('openblas_corename', '?')}, PyTorch {m['torch']}; load avg before "
          f"{record['loadavg_before'][0]:.1f}, after {record['loadavg_after'][0]:.1f}\n")
    print(markdown(rows))
    lfbench.progress(f"\nwrote {out / NAME}.csv, .json, .png")


if __name__ == "__main__":
    main()
