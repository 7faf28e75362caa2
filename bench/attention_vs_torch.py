#!/usr/bin/env python3
"""lorafast's exact attention gradient vs PyTorch eager autograd, side by side.

For each L (and causal / not), runs `lorafast bench --json` and torch_attention.py,
one size per process each (peak RSS is per process), one after the other on the
same thread count. Writes bench/results/attention_vs_torch.{csv,json,png} and prints
a markdown table for the README.

    python3 bench/attention_vs_torch.py            # L = 512 ... 16384, 2 threads
    python3 bench/attention_vs_torch.py --quick    # L = 512 ... 2048 (smoke test)
    --rounds 3 alternates both sides three times and keeps the best (noisy hosts)
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
COLUMNS = ["L", "E", "causal", "threads", "ours_ms", "torch_ms", "speedup", "ours_gflops", "torch_gflops",
           "sgemm_gflops", "ours_pct_sgemm", "ours_rss_mb", "torch_rss_mb", "note"]


def torch_estimate_gib(L, H, causal):
    """Peak of torch_attention.py: about four live [H, L, L] float32 matrices (scores,
    softmax output, its gradient, the scores' gradient) plus the bool causal mask, plus
    ~0.3 GiB for the interpreter and torch itself (measured: ~3.5 L^2 floats at L=4096)."""
    return (16 * H + (1 if causal else 0)) * L * L / 2**30 + 0.3


def run_json(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stderr}")
    return json.loads(proc.stdout)


def measure(args, L, causal):
    """Runs both sides --rounds times, alternating; keeps each side's fastest median,
    the highest sgemm and the highest peak RSS (the host's noise only ever slows us)."""
    common = ["--seq-len", str(L), "--head-dim", str(args.head_dim), "--heads", str(args.heads),
              "--threads", str(args.threads), "--min-time", str(args.min_time)] + (["--causal"] if causal else [])
    est = torch_estimate_gib(L, args.heads, causal)
    run_torch = est <= args.torch_max_gib
    ours_runs, torch_runs = [], []
    for _ in range(args.rounds):
        ours_runs.append(run_json([args.lorafast, "bench", "--json"] + common))
        if run_torch:
            torch_runs.append(run_json([sys.executable, str(HERE / "torch_attention.py")] + common))
    best = min((o["results"][0] for o in ours_runs), key=lambda r: r["ms_median"])
    sgemm = max(o["gemm"]["gflops"] for o in ours_runs)
    row = {"L": L, "E": args.head_dim, "causal": int(causal), "threads": args.threads,
           "ours_ms": best["ms_median"], "ours_gflops": best["gflops"], "sgemm_gflops": sgemm,
           "ours_pct_sgemm": 100.0 * best["gflops"] / sgemm,
           "ours_rss_mb": max(o["results"][0]["peak_rss_mb"] for o in ours_runs),
           "torch_ms": None, "torch_gflops": None, "torch_rss_mb": None, "speedup": None,
           "note": "" if run_torch else f"torch skipped: est. {est:.2f} GiB > --torch-max-gib {args.torch_max_gib:g}"}
    if torch_runs:
        t = min(torch_runs, key=lambda r: r["ms_median"])
        row.update(torch_ms=t["ms_median"], torch_gflops=t["gflops"],
                   torch_rss_mb=max(r["peak_rss_mb"] for r in torch_runs), speedup=t["ms_median"] / best["ms_median"])
    return row, {"ours": ours_runs, "torch": torch_runs}


def fmt(x, spec):
    return "" if x is None else format(x, spec)


def write_csv(path, rows):
    specs = {"ours_ms": ".3f", "torch_ms": ".3f", "speedup": ".2f", "ours_gflops": ".2f", "torch_gflops": ".2f",
             "sgemm_gflops": ".2f", "ours_pct_sgemm": ".1f", "ours_rss_mb": ".1f", "torch_rss_mb": ".1f"}
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow({c: fmt(row[c], specs[c]) if c in specs else row[c] for c in COLUMNS})


def markdown(rows):
    out = ["| L | causal | ours ms | torch ms | speedup | ours GFLOP/s | torch GFLOP/s | sgemm GFLOP/s "
           "| ours % sgemm | ours RSS MiB | torch RSS MiB |",
           "|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        skipped = "skipped" if r["torch_ms"] is None else None
        out.append("| " + " | ".join([
            str(r["L"]), "yes" if r["causal"] else "no", fmt(r["ours_ms"], ".1f"),
            skipped or fmt(r["torch_ms"], ".1f"), skipped or fmt(r["speedup"], ".2f") + "×",
            fmt(r["ours_gflops"], ".1f"), skipped or fmt(r["torch_gflops"], ".1f"), fmt(r["sgemm_gflops"], ".1f"),
            fmt(r["ours_pct_sgemm"], ".0f") + "%", fmt(r["ours_rss_mb"], ".0f"),
            skipped or fmt(r["torch_rss_mb"], ".0f")]) + " |")
    return "\n".join(out)


def plot(path, rows, machine):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_g) = plt.subplots(1, 2, figsize=(12, 4.8))
    for causal, color in ((0, "tab:blue"), (1, "tab:orange")):
        sel = [r for r in rows if r["causal"] == causal]
        if not sel:
            continue
        label = "causal" if causal else "bidirectional"
        Ls = [r["L"] for r in sel]
        tL = [r["L"] for r in sel if r["torch_ms"] is not None]
        ax_t.plot(Ls, [r["ours_ms"] for r in sel], "o-", color=color, label=f"lorafast, {label}")
        ax_t.plot(tL, [r["torch_ms"] for r in sel if r["torch_ms"] is not None], "s--", color=color,
                  label=f"PyTorch, {label}")
        ax_g.plot(Ls, [r["ours_gflops"] for r in sel], "o-", color=color, label=f"lorafast, {label}")
        ax_g.plot(tL, [r["torch_gflops"] for r in sel if r["torch_ms"] is not None], "s--", color=color,
                  label=f"PyTorch, {label}")
    # Each lorafast process measures its own sgemm: one point per run shows the spread.
    Ls = sorted({r["L"] for r in rows})
    sgemm = [statistics.median(r["sgemm_gflops"] for r in rows if r["L"] == L) for L in Ls]
    ax_g.plot(Ls, sgemm, "x:", color="gray", label="sgemm, same process (median over causal/not)")
    for ax in (ax_t, ax_g):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length L")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax_t.set_yscale("log")
    ax_t.set_ylabel("forward + backward, ms (median)")
    ax_t.set_title("time")
    ax_g.set_ylim(bottom=0)
    ax_g.set_ylabel("GFLOP/s (nominal 14·L²·E, half when causal)")
    ax_g.set_title("throughput")
    e, t = rows[0]["E"], rows[0]["threads"]
    fig.suptitle(f"exact attention gradient, f32, E={e}, 1 head, {t} threads — {machine['cpu']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lorafast", default=str(ROOT / "build" / "lorafast"), help="path to the lorafast binary")
    ap.add_argument("--seq-len", type=int, nargs="+", default=[512 << i for i in range(6)], help="L values")
    ap.add_argument("--quick", action="store_true", help="L = 512, 1024, 2048 (smoke test)")
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--causal", choices=["both", "yes", "no"], default="both")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per size and side (>= 3 reps)")
    ap.add_argument("--rounds", type=int, default=1, help="alternate both sides this many times, keep the best")
    ap.add_argument("--torch-max-gib", type=float, default=12.0, help="skip torch sizes estimated above this")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    args = ap.parse_args()
    if args.quick:
        args.seq_len = [L for L in args.seq_len if L <= 2048] or [512, 1024, 2048]
    if not os.access(args.lorafast, os.X_OK):
        sys.exit(f"no lorafast binary at {args.lorafast} (build it, or pass --lorafast)")

    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(f"warning: load average {load_before[0]:.1f} before the run; other work skews the timings",
              file=sys.stderr)
    causal_modes = {"both": [False, True], "yes": [True], "no": [False]}[args.causal]
    rows, raw = [], []
    for causal in causal_modes:
        for L in args.seq_len:
            row, runs = measure(args, L, causal)
            rows.append(row)
            raw.append(runs)
            print(f"L={L:6d} causal={int(causal)}  ours {row['ours_ms']:10.2f} ms  torch "
                  f"{fmt(row['torch_ms'], '10.2f') or 'skipped':>10} ms  speedup {fmt(row['speedup'], '.2f') or '-'}",
                  file=sys.stderr)

    import torch
    machine = dict(raw[0]["ours"][0]["machine"], torch_version=torch.__version__, threads=args.threads)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "attention_vs_torch.csv", rows)
    sidecar = {"machine": machine, "command": " ".join(["python3", "bench/attention_vs_torch.py"] + sys.argv[1:]),
               "date": datetime.datetime.now().isoformat(timespec="seconds"),
               "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
               "flop_count": "14*L^2*E per head, half when causal (nominal, both sides)",
               "rounds": args.rounds, "sgemm": raw[0]["ours"][0]["gemm"]["method"], "rows": rows, "raw": raw}
    (out / "attention_vs_torch.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    plot(out / "attention_vs_torch.png", rows, machine)

    coretype = machine.get("openblas_coretype") or "unset"
    print(f"CPU: {machine['cpu']}, {args.threads} threads, OpenBLAS core {machine['openblas_corename']} "
          f"(OPENBLAS_CORETYPE {coretype}), PyTorch {machine['torch_version']}\n")
    print(markdown(rows))
    print(f"\nwrote {out / 'attention_vs_torch.csv'}, .json, .png", file=sys.stderr)


if __name__ == "__main__":
    main()
