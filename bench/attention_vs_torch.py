#!/usr/bin/env python3
"""lorafast's exact attention forward + backward vs PyTorch 2.13, side by side.

For each heads count (N·H), L and causal / not, one process per size and side (peak
RSS is per process), one after the other on the same thread count:
  ours    `lorafast bench --json --layout nhle`: the C++ call on SDPA's [N, H, L, E]
          layout (it also measures sgemm in-process)
  python  lorafast.attention on torch tensors (bench/torch_attention.py --impl lorafast)
  sdpa    torch's scaled_dot_product_attention, its flash CPU kernel
  math    SDPA's math backend (the bmm/softmax/bmm composite; skipped above --torch-max-gib)
Writes bench/results/attention_vs_torch.{csv,json,png} and prints a markdown table;
"ceiling vs SDPA" is the speedup that running every nominal FLOP at the same-run sgemm
rate would give (sgemm GFLOP/s over SDPA's), and at the machine's f32 multiply-add
peak that `lorafast bench` measures beside it: a speedup above the second is out of
reach of any f32 kernel doing this arithmetic. --dtype bf16 runs every side on
bfloat16 tensors (lorafast: `bench --dtype bf16`, bf16 tile products) and measures
the peak columns against the same-run bf16 dot-product peak instead; its files are
attention_vs_torch_bf16.*.

    .venv/bin/python bench/attention_vs_torch.py           # H = 1, 12; L = 512 ... 16384
    .venv/bin/python bench/attention_vs_torch.py --quick   # H = 1; L = 512 ... 2048 (smoke test)
    --rounds 3 alternates the sides three times and keeps each one's best (noisy hosts)
    --omp-wait-policy passive|active sets OMP_WAIT_POLICY for every side (default: unset,
    each side's own default; under load PyTorch's default busy-wait slows it badly)
"""
import argparse
import csv
import datetime
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIDES = ["ours", "python", "sdpa", "math"]
COLUMNS = (["heads", "L", "E", "causal", "threads", "dtype"] + [f"{s}_ms" for s in SIDES]
           + ["python_overhead_pct", "speedup_vs_sdpa", "speedup_vs_math"] + [f"{s}_gflops" for s in SIDES]
           + ["sgemm_gflops", "ours_pct_sgemm", "sdpa_pct_sgemm", "ceiling_vs_sdpa"]
           + ["fma_peak_gflops", "ours_pct_peak", "sdpa_pct_peak", "peak_ceiling_vs_sdpa"]
           + [f"{s}_rss_mb" for s in SIDES] + ["note"])


def math_estimate_gib(L, H, causal):
    """Peak of the math backend: about four live [H, L, L] float32 matrices (scores,
    softmax output, its gradient, the scores' gradient) plus the causal mask, plus ~0.3
    GiB for the interpreter and torch itself."""
    return (16 * H + (1 if causal else 0)) * L * L / 2**30 + 0.3


def run_json(cmd, env):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stderr}")
    return json.loads(proc.stdout)


def side_command(args, side, L, heads, causal):
    common = ["--seq-len", str(L), "--head-dim", str(args.head_dim), "--heads", str(heads), "--dtype", args.dtype,
              "--threads", str(args.threads), "--min-time", str(args.min_time)] + (["--causal"] if causal else [])
    if side == "ours":
        return [args.lorafast, "bench", "--json", "--layout", "nhle"] + common  # SDPA's [N, H, L, E], as the others
    return [sys.executable, str(HERE / "torch_attention.py"), "--impl", {"python": "lorafast"}.get(side, side)] + common


def measure(args, env, L, heads, causal):
    """Runs every side --rounds times, alternating; keeps each side's fastest median,
    the highest sgemm and multiply-add peak and the highest peak RSS (the host's noise
    only ever slows us)."""
    est = math_estimate_gib(L, heads, causal)
    sides = [s for s in SIDES if s != "math" or est <= args.torch_max_gib]
    runs = {s: [] for s in sides}
    for _ in range(args.rounds):
        for side in sides:
            out = run_json(side_command(args, side, L, heads, causal), env)
            if side == "ours":
                # The peak of the run's own precision: f32 multiply-adds, or bf16 pair dot products.
                peak = out["bf16_peak"] if args.dtype == "bf16" else out["fma_peak"]
                if peak is None:
                    sys.exit("--dtype bf16: this CPU has no bf16 dot-product peak to measure against (no AVX512-BF16)")
                out = dict(out["results"][0], sgemm_gflops=out["gemm"]["gflops"], sgemm=out["gemm"].get("method"),
                           fma_peak_gflops=peak["gflops"], fma_peak=peak["method"], machine=out["machine"])
            runs[side].append(out)
    row = {"heads": heads, "L": L, "E": args.head_dim, "causal": int(causal), "threads": args.threads,
           "dtype": args.dtype,
           "note": "" if "math" in sides else f"math skipped: est. {est:.2f} GiB > --torch-max-gib {args.torch_max_gib:g}"}
    for side in SIDES:
        best = min(runs[side], key=lambda r: r["ms_median"]) if runs.get(side) else None
        row[f"{side}_ms"] = best["ms_median"] if best else None
        row[f"{side}_gflops"] = best["gflops"] if best else None
        row[f"{side}_rss_mb"] = max(r["peak_rss_mb"] for r in runs[side]) if best else None
    row["sgemm_gflops"] = max(r["sgemm_gflops"] for r in runs["ours"])
    row["ours_pct_sgemm"] = 100.0 * row["ours_gflops"] / row["sgemm_gflops"]
    row["sdpa_pct_sgemm"] = 100.0 * row["sdpa_gflops"] / row["sgemm_gflops"]
    # The speedup over SDPA that running every nominal FLOP at the same-run sgemm rate
    # would give: a roofline for this kernel shape on this machine.
    row["ceiling_vs_sdpa"] = row["sgemm_gflops"] / row["sdpa_gflops"]
    # The same at the machine's f32 multiply-add peak: the bound no f32 kernel passes.
    row["fma_peak_gflops"] = max(r["fma_peak_gflops"] for r in runs["ours"])
    row["ours_pct_peak"] = 100.0 * row["ours_gflops"] / row["fma_peak_gflops"]
    row["sdpa_pct_peak"] = 100.0 * row["sdpa_gflops"] / row["fma_peak_gflops"]
    row["peak_ceiling_vs_sdpa"] = row["fma_peak_gflops"] / row["sdpa_gflops"]
    row["python_overhead_pct"] = 100.0 * (row["python_ms"] / row["ours_ms"] - 1)
    row["speedup_vs_sdpa"] = row["sdpa_ms"] / row["ours_ms"]
    row["speedup_vs_math"] = row["math_ms"] / row["ours_ms"] if row["math_ms"] else None
    return row, runs


def fmt(x, spec):
    return "" if x is None else format(x, spec)


def write_csv(path, rows):
    specs = {c: ".3f" if c.endswith("_ms") else ".2f" if c.endswith("gflops") or c.startswith(("speedup", "ceiling")) else ".1f"
             for c in COLUMNS if c not in ("heads", "L", "E", "causal", "threads", "dtype", "note")}
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow({c: fmt(row[c], specs[c]) if c in specs else row[c] for c in COLUMNS})


def markdown(rows):
    out = ["| N·H | L | causal | C++ ms | Python ms | SDPA (flash) ms | math ms | vs SDPA | vs math "
           "| Python overhead | ours GFLOP/s | % peak ours / SDPA | ceiling vs SDPA: sgemm / peak | RSS MiB ours / SDPA |",
           "|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append("| " + " | ".join([
            str(r["heads"]), str(r["L"]), "yes" if r["causal"] else "no", fmt(r["ours_ms"], ".1f"),
            fmt(r["python_ms"], ".1f"), fmt(r["sdpa_ms"], ".1f"), fmt(r["math_ms"], ".1f") or "skipped",
            fmt(r["speedup_vs_sdpa"], ".2f") + "×", (fmt(r["speedup_vs_math"], ".2f") + "×") if r["math_ms"] else "-",
            fmt(r["python_overhead_pct"], "+.1f") + "%", fmt(r["ours_gflops"], ".1f"),
            fmt(r["ours_pct_peak"], ".0f") + "% / " + fmt(r["sdpa_pct_peak"], ".0f") + "%",
            fmt(r["ceiling_vs_sdpa"], ".2f") + "× / " + fmt(r["peak_ceiling_vs_sdpa"], ".2f") + "×",
            fmt(r["ours_rss_mb"], ".0f") + " / " + fmt(r["sdpa_rss_mb"], ".0f")]) + " |")
    return "\n".join(out)


def plot(path, rows, machine, dtype):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heads = sorted({r["heads"] for r in rows})
    fig, axes = plt.subplots(1, len(heads), figsize=(6.5 * len(heads), 4.8), squeeze=False)
    styles = {"ours": ("o-", "lorafast (C++)"), "python": ("^:", "lorafast (Python)"),
              "sdpa": ("s--", "SDPA flash"), "math": ("d-.", "SDPA math")}
    for ax, h in zip(axes[0], heads):
        for causal, color in ((0, "tab:blue"), (1, "tab:orange")):
            sel = [r for r in rows if r["heads"] == h and r["causal"] == causal]
            for side, (style, label) in styles.items():
                pts = [(r["L"], r[f"{side}_ms"]) for r in sel if r[f"{side}_ms"] is not None]
                if pts:
                    ax.plot(*zip(*pts), style, color=color, label=f"{label}, {'causal' if causal else 'bidir'}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L")
        ax.set_ylabel("forward + backward, ms (median)")
        ax.set_title(f"N·H = {h}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    e, t = rows[0]["E"], rows[0]["threads"]
    fig.suptitle(f"exact attention, {dtype}, E={e}, {t} threads, PyTorch {machine['torch_version']} — {machine['cpu']}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lorafast", default=str(ROOT / "build" / "lorafast"), help="path to the lorafast binary")
    ap.add_argument("--python-path", default=str(ROOT / "build" / "python"),
                    help="where the built lorafast package is (PYTHONPATH of the Python side)")
    ap.add_argument("--seq-len", type=int, nargs="+", default=[512 << i for i in range(6)], help="L values")
    ap.add_argument("--heads", type=int, nargs="+", default=[1, 12], help="N·H values (one sequence, H heads)")
    ap.add_argument("--max-flop", type=float, default=3e12,
                    help="skip sizes whose nominal forward + backward FLOP exceed this (the L = 16384, 12-head cases)")
    ap.add_argument("--quick", action="store_true", help="H = 1, L = 512, 1024, 2048 (smoke test)")
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--causal", choices=["both", "yes", "no"], default="both")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per size and side (>= 3 reps)")
    ap.add_argument("--rounds", type=int, default=1, help="alternate the sides this many times, keep the best")
    ap.add_argument("--torch-max-gib", type=float, default=12.0, help="skip math-backend sizes estimated above this")
    ap.add_argument("--omp-wait-policy", choices=["unset", "passive", "active"], default="unset",
                    help="OMP_WAIT_POLICY for every side (recorded in the JSON)")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32",
                    help="tensors of every side; bf16: peak columns against the bf16 dot-product peak")
    args = ap.parse_args()
    if args.quick:
        args.seq_len = [L for L in args.seq_len if L <= 2048] or [512, 1024, 2048]
        args.heads = [1]
    if not os.access(args.lorafast, os.X_OK):
        sys.exit(f"no lorafast binary at {args.lorafast} (build it, or pass --lorafast)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [args.python_path, os.environ.get("PYTHONPATH")])))
    if args.omp_wait_policy != "unset":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy

    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(f"warning: load average {load_before[0]:.1f} before the run; other work skews the timings",
              file=sys.stderr)
    causal_modes = {"both": [False, True], "yes": [True], "no": [False]}[args.causal]
    rows, raw = [], []
    for heads in args.heads:
        for causal in causal_modes:
            for L in args.seq_len:
                if 14.0 * L * L * args.head_dim * heads * (0.5 if causal else 1.0) > args.max_flop:
                    continue
                row, runs = measure(args, env, L, heads, causal)
                rows.append(row)
                raw.append(runs)
                print(f"H={heads:2d} L={L:6d} causal={int(causal)}  C++ {row['ours_ms']:9.2f} ms  Python "
                      f"{row['python_ms']:9.2f} ms  SDPA {row['sdpa_ms']:9.2f} ms  math "
                      f"{fmt(row['math_ms'], '9.2f') or 'skipped':>9} ms", file=sys.stderr)

    import torch
    machine = dict(raw[0]["ours"][0]["machine"], torch_version=torch.__version__, threads=args.threads,
                   omp_wait_policy=args.omp_wait_policy)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "attention_vs_torch" + ("_bf16" if args.dtype == "bf16" else "")
    write_csv(out / f"{stem}.csv", rows)
    sidecar = {"machine": machine,
               "command": " ".join([".venv/bin/python", "bench/attention_vs_torch.py"] + sys.argv[1:]),
               "date": datetime.datetime.now().isoformat(timespec="seconds"),
               "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
               "flop_count": "14*L^2*E per head, half when causal (nominal, every side)",
               "rounds": args.rounds, "sgemm": raw[0]["ours"][0]["sgemm"], "fma_peak": raw[0]["ours"][0]["fma_peak"],
               "rows": rows, "raw": raw}
    (out / f"{stem}.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    plot(out / f"{stem}.png", rows, machine, args.dtype)

    coretype = machine.get("openblas_coretype") or "unset"
    print(f"CPU: {machine['cpu']}, {args.threads} threads, OpenBLAS core {machine['openblas_corename']} "
          f"(OPENBLAS_CORETYPE {coretype}), PyTorch {machine['torch_version']}, "
          f"OMP_WAIT_POLICY {args.omp_wait_policy}, {args.dtype}\n")
    print(markdown(rows))
    print(f"\nwrote {out / (stem + '.csv')}, .json, .png", file=sys.stderr)


if __name__ == "__main__":
    main()
