#!/usr/bin/env python3
"""Llama LoRA fine-tuning throughput and peak memory: `lorafast finetune` vs
transformers + PEFT (attn_implementation "sdpa" and "eager").

A Llama-shaped model with random weights (transformers' own initialisation, written
by its save_pretrained: 12 layers, hidden 768, 12 heads, 4 key/value heads,
intermediate 2048, vocab 32000, tied embeddings, max_position_embeddings 1024;
100.1M parameters) trains on random uint16 token ids at --seq-len 1024: LoRA rank 8
(alpha 8) on q_proj and v_proj, AdamW on the adapters, clip 1, float32.
bench/torch_llama_train.py runs the same model directory, token file and training
windows in transformers + PEFT. The harness is gpt_train_vs_torch.py's (one process
per side and round, peak RSS from GNU time, OMP_WAIT_POLICY=passive, untimed
--warmup updates, tokens/s from the fastest round's median timed update, the load
average sampled during each side); step 1's loss must agree between all sides (same
model, same windows, B = 0 everywhere) before anything is reported.

Writes bench/results/llama_train_vs_torch.{csv,json,png} and prints a markdown table,
and a roofline: the step's nominal FLOPs (nominal_gflop_per_step) at the rate of a
large sgemm measured in the same run (`lorafast bench`), and at the machine's f32
multiply-add peak that `lorafast bench` measures beside it, i.e. the fastest any f32
implementation of this step could be on this machine, and the ceilings these put on
the speedup over each transformers side.

--dtype bf16 measures bf16 mixed precision instead (files llama_train_vs_torch_bf16.*):
lorafast `finetune --dtype bf16` (frozen weights in bf16, bf16 x bf16 -> f32 products,
adapters, AdamW, norms and the loss in f32) is the anchor, beside lorafast f32 in the
same invocation (so "vs our f32" is a same-run ratio, time and peak RSS) and four
transformers + PEFT sides (torch_llama_train.py --precision): sdpa and eager, each
(a) under torch.autocast("cpu", torch.bfloat16) on the f32 model and (b) loaded with
dtype=torch.bfloat16, where PEFT's autocast_adapter_dtype=True (its default) keeps
the LoRA A/B, their gradients and AdamW's state in f32. Every side's step-1 loss must
agree with lorafast f32's (no bf16 rounding in it) within LOSS_AGREEMENT_BF16 (2^-10
relative; gpt_train_vs_torch.py says why, with the measured bf16 errors). The
roofline is against the bf16 dot-product peak `lorafast bench` measures in the same
run (bf16_peak: vdpbf16ps chains on every thread); `lorafast bench` reports no bf16
GEMM rate, so there is no practical bf16 ceiling beside it. lorafast f32's share of
the f32 multiply-add peak is printed too.

torch.compile is not a default side: on CPU, inductor compiled the 2-layer --quick
model's PEFT training step (forward and backward, sdpa, bf16 autocast) in 153 s (on a
host with load 7 on 2 cores; the compiled steps after it were no faster than eager
on that tiny model), and the 12-layer model's graph is six times larger. --compile
adds the two compiled sdpa sides (autocast, bf16 weights) for a run that can afford
it; the compilation falls in the untimed --warmup update, which must be at least 1.

    python3 bench/llama_train_vs_torch.py              # the 100M Llama shape, seq-len 1024, 2 threads
    python3 bench/llama_train_vs_torch.py --quick      # a tiny model (smoke test: step-1 losses only)
    python3 bench/llama_train_vs_torch.py --replot     # redraw the PNG from the JSON
    python3 bench/llama_train_vs_torch.py --dtype bf16 # the bf16 sides (also with --quick, --replot)
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gpt_train_vs_torch as gptbench  # noqa: E402
import lfbench  # noqa: E402

NAME = "llama_train_vs_torch"
COLUMNS = gptbench.COLUMNS[:4] + ["kv_heads", "intermediate"] + gptbench.COLUMNS[4:]
TARGETS = ["q_proj", "v_proj"]


def sides(dtype, compiled=False):
    """{side: its run}, the anchor (the side every ratio is against) first. A lorafast
    side is {"dtype": ...}; a transformers + PEFT side {"attn": ..., "precision": ...,
    "compile": ...}, torch_llama_train.py's --attn, --precision and --compile."""
    if dtype == "f32":
        return {"lorafast": {"dtype": "f32"}, "transformers sdpa": {"attn": "sdpa", "precision": "f32"},
                "transformers eager": {"attn": "eager", "precision": "f32"}}
    out = {"lorafast bf16": {"dtype": "bf16"}, "lorafast f32": {"dtype": "f32"}}
    for precision, label in (("autocast", "autocast"), ("bf16", "bf16 weights")):
        for attn in ("sdpa", "eager"):
            out[f"transformers {attn} {label}"] = {"attn": attn, "precision": precision}
        if compiled:
            out[f"transformers sdpa {label} compiled"] = {"attn": "sdpa", "precision": precision, "compile": True}
    return out


def stem(dtype):
    """Output file stem: f32 keeps the historical name."""
    return NAME if dtype == "f32" else f"{NAME}_{dtype}"


def make_inputs(args, work):
    """The model directory (transformers' save_pretrained) and token file, generated once into `work`."""
    import torch
    import transformers

    key = (f"L{args.layers}_H{args.heads}_K{args.kv_heads}_D{args.width}_F{args.intermediate}_V{args.vocab}"
           f"_P{args.positions}_s{args.seed}")
    model, data = work / key / "model", work / key / "ids.uint16"
    if not (model / "model.safetensors").exists():
        lfbench.progress(f"generating the random Llama model {key} in {work}")
        torch.manual_seed(args.seed)
        config = transformers.LlamaConfig(vocab_size=args.vocab, hidden_size=args.width,
                                          intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                                          num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                                          max_position_embeddings=args.positions, tie_word_embeddings=True)
        transformers.LlamaForCausalLM(config).save_pretrained(model)
    if not data.exists():
        rng = np.random.default_rng(args.seed + 1)
        rng.integers(0, args.vocab, max(1 << 16, 4 * (args.seq_len + 1))).astype("<u2").tofile(data)
    return model, data


def run_side(args, spec, model, data, lf):
    """One process of one side (`spec`, from sides()); flags a default already gives are left out."""
    if "dtype" in spec:  # torch_llama_train.py's constant learning rate and alpha = rank
        dtype = [] if spec["dtype"] == "f32" else ["--dtype", spec["dtype"]]
        return gptbench.ours(args, model, data, lf.env, lf.tmp,
                             extra=["--lr", 2e-4, "--warmup", 0, "--alpha", args.rank, "--targets", *TARGETS, *dtype])
    precision = [] if spec["precision"] == "f32" else ["--precision", spec["precision"]]
    compiled = ["--compile"] if spec.get("compile") else []
    return gptbench.pytorch(args, model, data, lf.env, lf.tmp, script=HERE / "torch_llama_train.py",
                            extra=["--attn", spec["attn"], "--targets", *TARGETS, *precision, *compiled])


def nominal_gflop_per_step(args):
    """GFLOP of one update: every frozen linear layer and the LM head forward (2 FLOP per
    weight per token) and back to its input (the same again; the first block's q/k/v
    input gradient is not needed), plus exact attention at 14 T^2 E per head (half:
    causal). LoRA's rank-8 products and the elementwise work are left out."""
    tokens, d, f, e = args.batch * args.seq_len, args.width, args.intermediate, args.width // args.heads
    qkv = d * (args.heads + 2 * args.kv_heads) * e
    block = qkv + args.heads * e * d + 3 * d * f
    head = args.vocab * d
    linear = 2 * tokens * (2 * (args.layers * block + head) - qkv)
    attention = args.layers * args.batch * args.heads * 14 * args.seq_len ** 2 * e / 2
    return (linear + attention) / 1e9


def same_run_rates(lf):
    """The same-run sgemm rate (2048^3 on the run's threads), f32 multiply-add peak and
    bf16 dot-product peak that `lorafast bench` measures, each the best of two runs."""
    runs = [lf.run(["bench", "--json", "--seq-len", 128, "--min-time", 0.3]) for _ in range(2)]
    return {"sgemm": max(r["gemm"]["gflops"] for r in runs), "fma_peak": max(r["fma_peak"]["gflops"] for r in runs),
            "bf16_peak": max(r["bf16_peak"]["gflops"] for r in runs)}


def f32_roofline(gflop, rates, rows):
    """Step floors at the sgemm rate and the f32 peak; ceilings over each other side."""
    floor, peak_floor = gflop / rates["sgemm"], gflop / rates["fma_peak"]
    o = rows[0]
    return {"gflop_per_step": gflop, "sgemm_gflops": rates["sgemm"], "floor_step_s": floor,
            "lorafast_pct_sgemm": 100 * floor / o["step_s"],
            "ceiling": {r["side"]: r["step_s"] / floor for r in rows[1:]},
            "fma_peak_gflops": rates["fma_peak"], "peak_floor_step_s": peak_floor,
            "lorafast_pct_peak": 100 * peak_floor / o["step_s"],
            "peak_ceiling": {r["side"]: r["step_s"] / peak_floor for r in rows[1:]},
            "flop_count": nominal_gflop_per_step.__doc__.split("\n")[0]}


def bf16_roofline(gflop, rates, rows):
    """The step floor at the bf16 peak: lorafast bf16's share of it, each PyTorch side's
    ceiling (the speedup over it if every nominal FLOP ran at that peak), and lorafast
    f32's share of the f32 peak."""
    floor = gflop / rates["bf16_peak"]
    by_side = {r["side"]: r for r in rows}
    return {"gflop_per_step": gflop, "bf16_peak_gflops": rates["bf16_peak"], "peak_floor_step_s": floor,
            "lorafast_pct_peak": 100 * floor / by_side["lorafast bf16"]["step_s"],
            "peak_ceiling": {s: r["step_s"] / floor for s, r in by_side.items() if not s.startswith("lorafast")},
            "fma_peak_gflops": rates["fma_peak"], "sgemm_gflops": rates["sgemm"],
            "lorafast_f32_pct_fma_peak": 100 * gflop / rates["fma_peak"] / by_side["lorafast f32"]["step_s"],
            "bf16_gemm": "not measured: `lorafast bench` reports no bf16 GEMM rate",
            "flop_count": nominal_gflop_per_step.__doc__.split("\n")[0]}


def markdown(rows, anchor="lorafast"):
    out = [f"| | tokens/s | step (s) | peak RSS (GiB) | {anchor} speedup | {anchor} memory | load avg during |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = lambda k, f: "" if r.get(k) is None else f(r[k])  # noqa: E731
        out.append(f"| {r['side']} | {r['tokens_per_s']:.0f} | {r['step_s']:.2f} | {r['peak_rss_mb'] / 1024:.2f} "
                   f"| {ratio('speedup', lambda v: f'{v:.2f}×')} | {ratio('memory_ratio', lambda v: f'{v:.2f}×')} "
                   f"| {r['loadavg_during']:.1f} |")
    return "\n".join(out)


def bf16_summary(rows):
    """The issue #28 ratios: lorafast bf16 against the fastest PyTorch bf16 side and against our own f32."""
    by_side = {r["side"]: r for r in rows}
    o, f32 = by_side["lorafast bf16"], by_side["lorafast f32"]
    fastest = min((r for r in rows if not r["side"].startswith("lorafast")), key=lambda r: r["step_s"])
    return (f"lorafast bf16: {fastest['step_s'] / o['step_s']:.2f}× the fastest PyTorch bf16 side ({fastest['side']}), "
            f"{f32['step_s'] / o['step_s']:.2f}× our f32, peak RSS {o['peak_rss_mb'] / f32['peak_rss_mb']:.2f}× our f32.")


def roofline_text(roofline):
    r = roofline
    if "bf16_peak_gflops" in r:
        return bf16_roofline_text(r)
    return (f"Roofline: {r['gflop_per_step']:.0f} nominal GFLOP per step; at the same-run sgemm rate "
            f"({r['sgemm_gflops']:.0f} GFLOP/s) a step would take {r['floor_step_s']:.2f} s, at the f32 "
            f"multiply-add peak ({r['fma_peak_gflops']:.0f} GFLOP/s) {r['peak_floor_step_s']:.2f} s. lorafast runs "
            f"at {r['lorafast_pct_sgemm']:.0f}% of the first and {r['lorafast_pct_peak']:.0f}% of the second; the "
            "ceiling on any f32 speedup over "
            + ", ".join(f"{side} is {c:.2f}× at sgemm, {r['peak_ceiling'][side]:.2f}× at peak"
                        for side, c in r["ceiling"].items()) + ".")


def bf16_roofline_text(r):
    return (f"Roofline: {r['gflop_per_step']:.0f} nominal GFLOP per step; at the same-run bf16 dot-product peak "
            f"({r['bf16_peak_gflops']:.0f} GFLOP/s) a step would take {r['peak_floor_step_s']:.2f} s. lorafast bf16 "
            f"runs at {r['lorafast_pct_peak']:.0f}% of it (lorafast f32 at {r['lorafast_f32_pct_fma_peak']:.0f}% of the "
            f"f32 multiply-add peak, {r['fma_peak_gflops']:.0f} GFLOP/s); the ceiling on any bf16 speedup over "
            + ", ".join(f"{side} is {c:.2f}×" for side, c in r["peak_ceiling"].items())
            + f" (bf16 GEMM rate {r['bf16_gemm'].split(': ', 1)[0]}).")


def plot(path, record):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, dtype = record["rows"], record["settings"].get("dtype", "f32")
    colors = ["tab:blue", "tab:gray", "silver"] if dtype == "f32" else ["tab:blue", "lightsteelblue"] + [
        "tab:gray", "silver", "dimgray", "gainsboro", "slategray", "lightgray"]
    fig, axes = plt.subplots(1, 2, figsize=(11 if len(rows) <= 3 else 13, 4.6 if len(rows) <= 3 else 5.6))
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
        if len(rows) > 3:
            ax.tick_params(axis="x", labelrotation=30, labelsize=8)
            plt.setp(ax.get_xticklabels(), ha="right")
    o, m = rows[0], record["machine"]
    precision = "f32" if dtype == "f32" else "bf16 mixed precision"
    fig.suptitle(f"Llama LoRA fine-tuning (r={record['settings']['rank']} on {', '.join(TARGETS)}, AdamW, {precision}): "
                 f"{o['layers']} layers, hidden {o['width']}, {o['heads']}/{o['kv_heads']} heads, vocab {o['vocab']}, "
                 f"T={o['seq_len']}, batch {o['batch']}, {o['threads']} threads", fontsize=9)
    fig.text(0.5, 0.01, f"{m['cpu']}, OMP_WAIT_POLICY={m['OMP_WAIT_POLICY']}, PyTorch {m.get('torch')}, "
                        f"transformers {m.get('transformers')}, {record['date']}, load avg during ≤ "
                        f"{max(float(r['loadavg_during']) for r in rows):.1f}", ha="center", fontsize=7, color="dimgray")
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
    ap.add_argument("--rounds", type=int, default=1, help="run every side this many times, keep the best")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--width", type=int, default=768, help="hidden_size")
    ap.add_argument("--intermediate", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--positions", type=int, default=1024)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--method", default="exact", help="lorafast's attention method")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32",
                    help="bf16: lorafast --dtype bf16 (and f32) against transformers + PEFT under bf16 autocast and "
                         "loaded in bf16; results in llama_train_vs_torch_bf16.*")
    ap.add_argument("--compile", action="store_true",
                    help="--dtype bf16: add torch.compile'd transformers sdpa sides (minutes of compilation each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="a tiny model (2 layers, hidden 64, 4/2 heads, vocab 512, T=64): checks the step-1 losses "
                         "agree, writes and times nothing")
    ap.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON of the last run")
    ap.add_argument("--work-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "lorafast-llama-bench"),
                    help="where the generated model and token file are cached")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    args = ap.parse_args()
    if args.quick:
        args.layers, args.heads, args.kv_heads, args.width, args.intermediate = 2, 4, 2, 64, 128
        args.vocab, args.positions, args.seq_len, args.steps, args.warmup, args.rounds = 512, 64, 64, 1, 0, 1
    if args.compile and (args.dtype != "bf16" or args.warmup < 1):
        sys.exit("--compile needs --dtype bf16 and --warmup >= 1 (the compilation happens in the first update)")
    return args


def replot(out, name):
    """Redraw the PNG and reprint the tables of a previous run's JSON."""
    record = json.loads((out / f"{name}.json").read_text())
    plot(out / f"{name}.png", record)
    print_tables(record["rows"], record.get("roofline"), record["settings"].get("dtype", "f32"))


def print_tables(rows, roofline, dtype):
    print(markdown(rows) if dtype == "f32" else markdown(rows, anchor="lorafast bf16") + "\n\n" + bf16_summary(rows))
    if roofline:
        print("\n" + roofline_text(roofline))


def run_sides(args, model, data, lf):
    """{side: [its run in each round]}: every side once per round, in sides() order."""
    runs = {side: [] for side in sides(args.dtype, args.compile)}
    for r in range(args.rounds):
        for side, spec in sides(args.dtype, args.compile).items():
            lfbench.progress(f"round {r + 1}/{args.rounds}: {side}")
            runs[side].append(run_side(args, spec, model, data, lf))
    return runs


def summary_rows(args, runs, rels, reference):
    """One row per side; every side after the first gets its ratios against the first
    (the anchor) and a note of its step-1 loss against `reference`'s."""
    rows = []
    for side, rs in runs.items():
        row = gptbench.summarise(args, side, rs)
        row.update(kv_heads=args.kv_heads, intermediate=args.intermediate)
        rows.append(row)
    o = rows[0]
    for r in rows[1:]:
        r["speedup"] = o["tokens_per_s"] / r["tokens_per_s"]  # the anchor's, against this side
        r["memory_ratio"] = r["peak_rss_mb"] / o["peak_rss_mb"]  # this side's memory over the anchor's
    for r in rows:
        if r["side"] != reference:
            r["note"] = f"step-1 loss agrees with {reference} to {rels[r['side']]:.1e} relative"
    return rows


def main():
    args = parse_args()
    out, name = Path(args.out_dir), stem(args.dtype)
    if args.replot:
        return replot(out, name)
    if not os.access(args.lorafast, os.X_OK):
        sys.exit(f"no lorafast binary at {args.lorafast} (build it, or pass --lorafast)")
    if not os.access(gptbench.TIME, os.X_OK):
        sys.exit(f"{gptbench.TIME} (GNU time, Debian package 'time') is needed for the peak RSS")
    lf = lfbench.Lorafast(args.lorafast, args.threads, omp_wait_policy="passive")
    prov = lfbench.Provenance(f"{NAME}.py", args, lf)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    model, data = make_inputs(args, work)

    runs = run_sides(args, model, data, lf)
    # bf16: against lorafast f32, so the bound covers one side's bf16 rounding, not two
    reference = "lorafast" if args.dtype == "f32" else "lorafast f32"
    bound = gptbench.LOSS_AGREEMENT if args.dtype == "f32" else gptbench.LOSS_AGREEMENT_BF16
    rels = gptbench.check_step1_losses({side: rs[0]["losses"][0] for side, rs in runs.items()}, bound, reference)
    if args.quick:
        return  # a smoke test: nothing timed on a tiny model is worth writing

    rows = summary_rows(args, runs, rels, reference)
    gflop, rates = nominal_gflop_per_step(args), same_run_rates(lf)
    roofline = (f32_roofline if args.dtype == "f32" else bf16_roofline)(gflop, rates, rows)
    import torch
    import transformers
    record = prov.finish(rows=rows, runs=runs, step1_loss_rel_diff=rels, roofline=roofline,
                         timing="median step time of the timed updates (forward, backward, clip, AdamW), best round")
    record["machine"].update(torch=torch.__version__, transformers=transformers.__version__)
    out.mkdir(parents=True, exist_ok=True)
    gptbench.write_csv(out / f"{name}.csv", rows, COLUMNS)
    lfbench.write_json(out / f"{name}.json", record)
    plot(out / f"{name}.png", record)
    print_tables(rows, roofline, args.dtype)
    lfbench.progress(f"\nwrote {out / name}.csv, .json, .png")


if __name__ == "__main__":
    main()
