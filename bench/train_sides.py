"""The training benchmarks' comparison of several sides (llama_train_vs_torch.py, and
gpt_train_vs_torch.py --dtype bf16): which sides run, each side's process (through
gpt_train_vs_torch.py's ours() and pytorch(), which measure time, peak RSS and load),
the step-1 loss check, the rows and their ratios against the first side, the
roofline at the same-run peak of the run's precision (`lorafast bench`), the markdown
table and the figure. A model family supplies what differs (Family): its inputs, its
nominal FLOPs, the modules it adapts and its figure title.

The sides, by --dtype:
- f32: lorafast, transformers + PEFT sdpa and eager (bench/torch_llama_train.py, f32).
- bf16: lorafast `finetune --dtype bf16` (the anchor: every ratio is its own against
  that side) and lorafast f32 in the same invocation, transformers + PEFT sdpa and
  eager under torch.autocast("cpu", torch.bfloat16) ("autocast") and loaded with
  dtype=torch.bfloat16 ("bf16 weights": PEFT's autocast_adapter_dtype keeps the
  adapters in f32), and with --compile the torch.compile'd sdpa ones.
"""
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gpt_train_vs_torch as gptbench  # noqa: E402
import lfbench  # noqa: E402


@dataclass
class Family:
    """What a model family brings to the shared flow."""
    name: str  # the output file stem (f32); bf16 appends _bf16
    script: str  # the benchmark script, for the provenance record
    columns: list  # CSV columns
    targets: list  # the adapted modules, as lorafast and PEFT both name them
    make_inputs: Callable  # (args, work dir) -> (model dir, token file)
    nominal_gflop_per_step: Callable  # args -> GFLOP of one update; its docstring's first line says what is counted
    title: Callable  # (first row, settings) -> the figure's title, after "<precision>): "
    row_extra: Callable = lambda args: {}  # args -> family columns of every row


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


def stem(family, dtype):
    """Output file stem: f32 keeps the historical name."""
    return family.name if dtype == "f32" else f"{family.name}_{dtype}"


def run_side(args, family, spec, model, data, lf):
    """One process of one side (`spec`, from sides()); flags a default already gives are left out."""
    if "dtype" in spec:  # torch_llama_train.py's constant learning rate and alpha = rank
        dtype = [] if spec["dtype"] == "f32" else ["--dtype", spec["dtype"]]
        return gptbench.ours(args, model, data, lf.env, lf.tmp, extra=["--lr", 2e-4, "--warmup", 0, "--alpha", args.rank,
                                                                      "--targets", *family.targets, *dtype])
    precision = [] if spec["precision"] == "f32" else ["--precision", spec["precision"]]
    compiled = ["--compile"] if spec.get("compile") else []
    return gptbench.pytorch(args, model, data, lf.env, lf.tmp, script=HERE / "torch_llama_train.py",
                            extra=["--attn", spec["attn"], "--targets", *family.targets, *precision, *compiled])


def same_run_rates(lf):
    """The same-run sgemm rate (2048^3 on the run's threads), f32 multiply-add peak and
    bf16 dot-product peak that `lorafast bench` measures, each the best of two runs."""
    runs = [lf.run(["bench", "--json", "--seq-len", 128, "--min-time", 0.3]) for _ in range(2)]
    return {"sgemm": max(r["gemm"]["gflops"] for r in runs), "fma_peak": max(r["fma_peak"]["gflops"] for r in runs),
            "bf16_peak": max(r["bf16_peak"]["gflops"] for r in runs)}


def f32_roofline(gflop, rates, rows, flop_count):
    """Step floors at the sgemm rate and the f32 peak; ceilings over each other side."""
    floor, peak_floor = gflop / rates["sgemm"], gflop / rates["fma_peak"]
    o = rows[0]
    return {"gflop_per_step": gflop, "sgemm_gflops": rates["sgemm"], "floor_step_s": floor,
            "lorafast_pct_sgemm": 100 * floor / o["step_s"],
            "ceiling": {r["side"]: r["step_s"] / floor for r in rows[1:]},
            "fma_peak_gflops": rates["fma_peak"], "peak_floor_step_s": peak_floor,
            "lorafast_pct_peak": 100 * peak_floor / o["step_s"],
            "peak_ceiling": {r["side"]: r["step_s"] / peak_floor for r in rows[1:]},
            "flop_count": flop_count}


def bf16_roofline(gflop, rates, rows, flop_count):
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
            "flop_count": flop_count}


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


def plot(path, record, family):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, dtype = record["rows"], record["settings"].get("dtype", "f32")
    colors = ["tab:blue", "tab:gray", "silver"] if dtype == "f32" else ["tab:blue", "lightsteelblue"] + [
        "tab:gray", "silver", "dimgray", "gainsboro", "slategray", "lightgray"]
    fig, axes = plt.subplots(1, 2, figsize=(11 if len(rows) <= 3 else 13, 4.6 if len(rows) <= 3 else 5.6))
    gptbench.bar_panels(axes, rows, colors)
    for ax in axes:
        if len(rows) > 3:
            ax.tick_params(axis="x", labelrotation=30, labelsize=8)
            plt.setp(ax.get_xticklabels(), ha="right")
    o, m = rows[0], record["machine"]
    precision = "f32" if dtype == "f32" else "bf16 mixed precision"
    fig.suptitle(f"{family.title(o, record['settings'])} (r={record['settings']['rank']} on {', '.join(family.targets)}, "
                 f"AdamW, {precision}): {o['layers']} layers, hidden {o['width']}, {o['heads']}"
                 f"{'/' + str(o['kv_heads']) if 'kv_heads' in o else ''} heads, vocab {o['vocab']}, T={o['seq_len']}, "
                 f"batch {o['batch']}, {o['threads']} threads", fontsize=9)
    fig.text(0.5, 0.01, f"{m['cpu']}, OMP_WAIT_POLICY={m['OMP_WAIT_POLICY']}, PyTorch {m.get('torch')}, "
                        f"transformers {m.get('transformers')}, {record['date']}, load avg during ≤ "
                        f"{max(float(r['loadavg_during']) for r in rows):.1f}", ha="center", fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replot(out, name, family):
    """Redraw the PNG and reprint the tables of a previous run's JSON."""
    record = json.loads((out / f"{name}.json").read_text())
    plot(out / f"{name}.png", record, family)
    print_tables(record["rows"], record.get("roofline"), record["settings"].get("dtype", "f32"))


def print_tables(rows, roofline, dtype):
    print(markdown(rows) if dtype == "f32" else markdown(rows, anchor="lorafast bf16") + "\n\n" + bf16_summary(rows))
    if roofline:
        print("\n" + roofline_text(roofline))


def run_sides(args, family, model, data, lf):
    """{side: [its run in each round]}: every side once per round, in sides() order."""
    runs = {side: [] for side in sides(args.dtype, args.compile)}
    for r in range(args.rounds):
        for side, spec in sides(args.dtype, args.compile).items():
            lfbench.progress(f"round {r + 1}/{args.rounds}: {side}")
            runs[side].append(run_side(args, family, spec, model, data, lf))
    return runs


def summary_rows(args, family, runs, rels, reference):
    """One row per side; every side after the first gets its ratios against the first
    (the anchor) and a note of its step-1 loss against `reference`'s."""
    rows = []
    for side, rs in runs.items():
        row = gptbench.summarise(args, side, rs)
        row.update(family.row_extra(args))
        rows.append(row)
    o = rows[0]
    for r in rows[1:]:
        r["speedup"] = o["tokens_per_s"] / r["tokens_per_s"]  # the anchor's, against this side
        r["memory_ratio"] = r["peak_rss_mb"] / o["peak_rss_mb"]  # this side's memory over the anchor's
    for r in rows:
        if r["side"] != reference:
            r["note"] = f"step-1 loss agrees with {reference} to {rels[r['side']]:.1e} relative"
    return rows


def main(args, family):
    """Run every side, check the step-1 losses, write and print the results (--quick: the check only)."""
    out, name = Path(args.out_dir), stem(family, args.dtype)
    if args.replot:
        return replot(out, name, family)
    if not os.access(args.lorafast, os.X_OK):
        sys.exit(f"no lorafast binary at {args.lorafast} (build it, or pass --lorafast)")
    if not os.access(gptbench.TIME, os.X_OK):
        sys.exit(f"{gptbench.TIME} (GNU time, Debian package 'time') is needed for the peak RSS")
    lf = lfbench.Lorafast(args.lorafast, args.threads, omp_wait_policy="passive")
    prov = lfbench.Provenance(family.script, args, lf)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    model, data = family.make_inputs(args, work)

    runs = run_sides(args, family, model, data, lf)
    # bf16: against lorafast f32, so the bound covers one side's bf16 rounding, not two
    reference = "lorafast" if args.dtype == "f32" else "lorafast f32"
    bound = gptbench.LOSS_AGREEMENT if args.dtype == "f32" else gptbench.LOSS_AGREEMENT_BF16
    rels = gptbench.check_step1_losses({side: rs[0]["losses"][0] for side, rs in runs.items()}, bound, reference)
    if args.quick:
        return  # a smoke test: nothing timed on a tiny model is worth writing

    rows = summary_rows(args, family, runs, rels, reference)
    gflop, rates = family.nominal_gflop_per_step(args), same_run_rates(lf)
    flop_count = family.nominal_gflop_per_step.__doc__.split("\n")[0]
    roofline = (f32_roofline if args.dtype == "f32" else bf16_roofline)(gflop, rates, rows, flop_count)
    import torch
    import transformers
    record = prov.finish(rows=rows, runs=runs, step1_loss_rel_diff=rels, roofline=roofline,
                         timing="median step time of the timed updates (forward, backward, clip, AdamW), best round")
    record["machine"].update(torch=torch.__version__, transformers=transformers.__version__)
    out.mkdir(parents=True, exist_ok=True)
    gptbench.write_csv(out / f"{name}.csv", rows, family.columns)
    lfbench.write_json(out / f"{name}.json", record)
    plot(out / f"{name}.png", record, family)
    print_tables(rows, roofline, args.dtype)
    lfbench.progress(f"\nwrote {out / name}.csv, .json, .png")
