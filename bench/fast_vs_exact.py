#!/usr/bin/env python3
"""Time vs sequence length of the LoRA attention gradient: exact (SPEC §2), fast
(SPEC §3.2b), chained (SPEC §3.2a) and PyTorch eager autograd, on bounded scores.

Cases are `lorafast case` random cases grad/{bidir,causal}/N1/L/E/H2/R4/qv whose weight
gain is calibrated per (L, E) so that the certified (centred) score bound G is
--score-bound (0.5): the regime where the paper's algorithm is almost linear. fast and
chained each run at their own degree certified for --eps on the head with the largest G (forced
on both heads with --degree, so a curve keeps one feature count). Each case is validated first (at
--validate-len, gradients of every method vs exact f64). Then, L ascending, every method
runs until it is predicted (from its last time and its expected exponent: 2 for exact
and PyTorch, 1 for fast and chained) to exceed --max-seconds per run or the remaining
--budget, or PyTorch's memory estimate exceeds --torch-max-gib: those points are rows
with a note. Log-log slopes are fitted over each method's --fit-top largest L.

PyTorch (bench/torch_attention.py) times the attention core on random q, k, v of the
same shape ([H, L, E], float32); lorafast's time also includes the LoRA projections and
adapter gradients (O(L D^2), small at D = 16, 32). All times: best of up to 3 runs.

    python3 bench/fast_vs_exact.py            # L = 512 ... 65536, E = 8, 16, causal and not
    python3 bench/fast_vs_exact.py --quick    # E = 8, L = 512 ... 4096 (smoke test, < 1 min)
    --omp-wait-policy passive                 # fairer timings on a shared, loaded host

Writes bench/results/fast_vs_exact.{csv,json,png} (--out-dir) and prints the slopes
and a markdown table.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import lfbench as lb

METHODS = ("exact", "fast", "chained", "torch")
EXPONENT = {"exact": 2.0, "torch": 2.0, "fast": 1.0, "chained": 1.0}
COLUMNS = ["E", "causal", "L", "method", "seconds", "reps", "load1", "weight_gain", "score_bound",
           "centred_score_bound",
           "degree", "features", "note"]


def torch_estimate_gib(L, H, causal):
    """Peak memory of torch_attention.py (see attention_vs_torch.py): ~four [H, L, L]
    float32 matrices plus the bool mask plus ~0.3 GiB of interpreter and torch."""
    return (16 * H + (1 if causal else 0)) * L * L / 2**30 + 0.3


def run_torch(args, L, E, causal, timeout):
    """Best time (ms_min) of torch_attention.py on [H, L, E] q, k, v."""
    cmd = [sys.executable, str(lb.HERE / "torch_attention.py"), "--seq-len", str(L), "--head-dim", str(E),
           "--heads", str(args.heads), "--threads", str(args.threads), "--min-time", str(args.min_time)]
    if causal:
        cmd.append("--causal")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=torch_env(args))
    except subprocess.TimeoutExpired:
        raise lb.RunFailed(f"timeout after {timeout:.0f} s")
    if proc.returncode != 0:
        raise lb.RunFailed(f"torch exit {proc.returncode}: {(proc.stderr.strip().splitlines() or [''])[-1]}")
    res = json.loads(proc.stdout)
    return res["ms_min"] / 1e3, res["reps"]


def worst_head_degree(phase):
    """The degree certified for --eps on the head with the largest G, run on both heads:
    per-head degrees can flip with the other head's G from one L to the next, which
    would mix two feature counts in one curve."""
    degrees = [h["degree"] for h in phase["heads"]]
    if None in degrees:
        sys.exit(f"no degree certifies eps at G = {lb.max_head(phase, 'centred_score_bound'):.3g}; "
                 "lower --score-bound or raise --eps")
    return max(degrees)


def validate(lf, args, E, causal, notes):
    """Gradient error of every lorafast method, as timed, vs exact f64 at --validate-len
    in the timing regime (same G). Returns {L, weight_gain, errors}; failures go to notes."""
    L = args.validate_len
    name = lb.case_name(L, E, args.heads, causal)
    gain = lb.gain_for_score_bound(lf, name, args.score_bound, args.seed, args.heads, causal)
    case = lf.case(name, gain, args.seed)
    degree = {m: worst_head_degree(lf.phase(case, args.heads, causal, args.eps, method=m)) for m in ("fast", "chained")}
    ref = lf.grad(case, args.heads, causal, "exact", dtype="f64", out=lf.path("ref.safetensors"), timeout=600)
    errors = {}
    for m in ("exact", "fast", "chained"):
        try:
            res = lf.grad(case, args.heads, causal, m, degree=degree.get(m), timeout=600)
            errors[m] = lb.gradient_error(res["out"], ref["out"])
        except lb.RunFailed as e:
            errors[m] = None
            notes.append(f"validation E={E} causal={int(causal)} {m}: {e}")
            continue
        if errors[m] > args.eps:
            notes.append(f"validation E={E} causal={int(causal)} {m}: error {errors[m]:.3g} > eps {args.eps:g}")
    return {"L": L, "weight_gain": gain, "errors": errors}


def torch_env(args):
    return lb.omp_env(args.omp_wait_policy)


def make_cases(lf, args):
    """One case per (E, L), gain calibrated so that the centred score bound is
    --score-bound; the tensors do not depend on the mask (--causal is a grad flag)."""
    cases = {}
    for E in args.head_dim:
        for L in args.seq_len:
            name = lb.case_name(L, E, args.heads, True)
            gain = lb.gain_for_score_bound(lf, name, args.score_bound, args.seed, args.heads, True)
            path = lf.case(name, gain, args.seed, out=lf.path(f"case_E{E}_L{L}.safetensors"))
            cases[(E, L)] = {"path": path, "gain": gain}
    return cases


def run_series(lf, args, budget, share, cases, E, causal, method):
    """Times one (E, mask, method) curve, L ascending, until the next point is predicted
    (last time x (L'/L)^exponent) to exceed --max-seconds or this series' budget share."""
    rows, last, stopped, overhead = [], None, None, 0.0
    spent_until = budget.left() - share  # stop when the clock passes this
    for L in args.seq_len:
        case = cases[(E, L)]
        row = {"E": E, "causal": int(causal), "L": L, "method": method, "weight_gain": case["gain"],
               "score_bound": case["phase"]["score_bound"], "centred_score_bound": case["phase"]["centred"]}
        rows.append(row)
        if stopped:
            row["note"] = stopped
            continue
        predicted = 0.0 if last is None else last[1] * (L / last[0]) ** EXPONENT[method]
        left = budget.left() - spent_until
        if method == "torch" and torch_estimate_gib(L, args.heads, causal) > args.torch_max_gib:
            stopped = f"skipped: PyTorch memory est. {torch_estimate_gib(L, args.heads, causal):.1f} GiB > " \
                      f"--torch-max-gib {args.torch_max_gib:g} (from L={L})"
        elif predicted > args.max_seconds:
            stopped = f"skipped: predicted {predicted:.0f} s > --max-seconds {args.max_seconds:g} (from L={L})"
        elif last is not None and max(predicted, args.min_time) + overhead > left:
            stopped = f"skipped: predicted {predicted:.1f} s (+{overhead:.1f} s start-up) > {max(left, 0):.1f} s " \
                      f"left of this curve's share of --budget (from L={L})"
        if stopped:
            row["note"] = stopped
            continue
        timeout = max(3 * args.max_seconds, 60)
        row["load1"] = os.getloadavg()[0]
        wall = time.perf_counter()
        try:
            if method == "torch":
                row["seconds"], row["reps"] = run_torch(args, L, E, causal, timeout)
            else:
                res = lf.timed_grad(case["path"], args.heads, causal, method,
                                    degree=case["phase"]["degree"].get(method),
                                    min_time=args.min_time, timeout=timeout)
                row.update(seconds=res["seconds"], reps=res["reps"])
                if method != "exact":
                    row["degree"] = max(h["degree"] for h in res["heads"])
                    row["features"] = int(max(h["features"] for h in res["heads"]))
        except lb.RunFailed as e:
            stopped = row["note"] = f"failed at L={L}: {e}"
            continue
        last = (L, row["seconds"])
        # Process start-up (python + torch import for PyTorch) on top of the timed runs.
        overhead = max(time.perf_counter() - wall - row["seconds"] * row["reps"], 0.0)
        lb.progress(f"L={L:6d} E={E:2d} causal={int(causal)} {method:8s} {row['seconds']:9.4f} s "
                    f"(x{row['reps']}, load {row['load1']:.1f})")
    if stopped:
        lb.progress(f"E={E:2d} causal={int(causal)} {method:8s} {stopped}")
    return rows


# Curves in scheduling order, with their weight in the budget split: cheap curves first,
# so that what they leave of their share rolls over to the expensive ones.
PRIORITY = {"torch": (0, 1.0), "exact": (1, 3.0), "fast": (2, 3.0), "chained": (3, 1.0)}


def slopes(rows, top):
    out = {}
    for (E, causal, method) in sorted({(r["E"], r["causal"], r["method"]) for r in rows}):
        pts = [(r["L"], r.get("seconds")) for r in rows
               if (r["E"], r["causal"], r["method"]) == (E, causal, method)]
        out[f"E{E}/{'causal' if causal else 'bidir'}/{method}"] = lb.loglog_slope(pts, top)
    return out


STYLE = {"exact": ("o-", "tab:blue"), "fast": ("s-", "tab:red"), "chained": ("^-", "tab:green"),
         "torch": ("D--", "tab:gray")}
LABEL = {"exact": "exact", "fast": "fast (§3.2b)", "chained": "chained (§3.2a)", "torch": "PyTorch eager"}


def plot(path, rows, slope, validation, args, prov):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Es = sorted({r["E"] for r in rows})
    modes = sorted({r["causal"] for r in rows})
    fig, axes = plt.subplots(len(Es), len(modes), figsize=(6.2 * len(modes), 4.6 * len(Es)), squeeze=False)
    for i, E in enumerate(Es):
        for j, causal in enumerate(modes):
            ax = axes[i][j]
            key = f"E{E}/{'causal' if causal else 'bidir'}"
            fast_rows = [r for r in rows if (r["E"], r["causal"], r["method"]) == (E, causal, "fast")
                         and r.get("degree") is not None]
            for method in METHODS:
                sel = [r for r in rows if (r["E"], r["causal"], r["method"]) == (E, causal, method)]
                pts = [(r["L"], r["seconds"]) for r in sel if r.get("seconds") is not None]
                if not pts:
                    continue
                sl = slope.get(f"{key}/{method}")
                label = LABEL[method] + (f", slope {sl:.2f}" if sl is not None else "")
                skipped = [r["L"] for r in sel if r.get("seconds") is None]
                if skipped:
                    label += f" (L ≥ {min(skipped)} skipped)"
                style, color = STYLE[method]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color, label=label, ms=4)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.set_xlabel("sequence length L")
            ax.set_ylabel("forward + backward, seconds")
            deg = ""
            if fast_rows:
                d = sorted({r["degree"] for r in fast_rows})
                f = sorted({r["features"] for r in fast_rows})
                deg = f", degree {'/'.join(str(int(x)) for x in d)}, F = {'/'.join(map(str, f))}"
            val = validation.get(key, {}).get("errors", {})
            verr = ", ".join(f"{m} {e:.1e}" for m, e in val.items() if e is not None)
            ax.set_title(f"E={E}, H={args.heads}, {'causal' if causal else 'bidirectional'}, "
                         f"G≈{args.score_bound:g}, eps={args.eps:g}{deg}\n"
                         f"gradient error vs exact f64 at L={args.validate_len}: {verr}", fontsize=8.5)
            ax.legend(fontsize=7.5, loc="upper left")
    fig.suptitle("LoRA attention gradient (q, v adapted, R=4): time vs L, log-log; "
                 f"slopes fitted over the {args.fit_top} largest L of each method", fontsize=10)
    fig.text(0.005, 0.003, prov.caption(), fontsize=6, color="dimgray")
    fig.tight_layout(rect=(0, 0.015, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(rows, slope):
    Ls = sorted({r["L"] for r in rows})
    configs = sorted({(r["E"], r["causal"]) for r in rows})
    out = ["| E | mask | method | " + " | ".join(str(L) for L in Ls) + " | slope |",
           "|---:|:---|:---|" + "---:|" * len(Ls) + "---:|"]
    for E, causal in configs:
        for method in METHODS:
            cells = []
            for L in Ls:
                r = next((r for r in rows if (r["E"], r["causal"], r["method"], r["L"]) == (E, causal, method, L)),
                         None)
                cells.append("—" if r is None or r.get("seconds") is None else f"{r['seconds']:.3g}")
            sl = slope.get(f"E{E}/{'causal' if causal else 'bidir'}/{method}")
            out.append(f"| {E} | {'causal' if causal else 'bidir'} | {method} | " + " | ".join(cells)
                       + f" | {'' if sl is None else f'{sl:.2f}'} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-len", type=int, nargs="+", default=[512 << i for i in range(8)], help="L values")
    ap.add_argument("--head-dim", type=int, nargs="+", help="E values (default 8 16; --quick: 8)")
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--causal", choices=["both", "yes", "no"], default="both")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--score-bound", type=float, default=0.5, help="target centred score bound G")
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--min-time", type=float, default=0.5, help="repeat a point (<= 3 runs) until this many s")
    ap.add_argument("--max-seconds", type=float, default=150.0, help="skip points predicted slower than this")
    ap.add_argument("--budget", type=float, default=480.0,
                    help="seconds for the timing loop (validation and case set-up come on top)")
    ap.add_argument("--torch-max-gib", type=float, default=10.0)
    ap.add_argument("--validate-len", type=int, default=1024)
    ap.add_argument("--fit-top", type=int, default=3, help="fit slopes over this many largest L")
    ap.add_argument("--quick", action="store_true", help="E = 8, L = 512 ... 4096, budget 25 s (smoke test)")
    lb.add_common_args(ap)
    lb.add_replot_args(ap, "fast_vs_exact")
    args = ap.parse_args()
    if args.replot:
        out, prov = lb.previous_run(args)
        rec = prov.record
        plot(out / f"{args.name}.png", rec["rows"], rec["slopes"], rec["validation"],
             argparse.Namespace(**rec["settings"]), prov)
        return
    if args.quick:
        args.seq_len = [L for L in args.seq_len if L <= 4096]
        args.head_dim = args.head_dim or [8]
        args.budget = min(args.budget, 25.0)
        args.max_seconds = min(args.max_seconds, 5.0)
        args.min_time = min(args.min_time, 0.2)
        args.validate_len = min(args.validate_len, 512)
    args.seq_len = sorted(set(args.seq_len))
    args.head_dim = args.head_dim or [8, 16]

    lf = lb.Lorafast(args.lorafast, args.threads, omp_wait_policy=args.omp_wait_policy)
    prov = lb.Provenance("fast_vs_exact.py", args, lf)
    budget = lb.Budget(args.budget)
    modes = {"both": [False, True], "yes": [True], "no": [False]}[args.causal]
    notes = []

    validation = {}
    for E in args.head_dim:
        for causal in modes:
            key = f"E{E}/{'causal' if causal else 'bidir'}"
            validation[key] = validate(lf, args, E, causal, notes)
            lb.progress(f"validate {key} L={args.validate_len}: " + ", ".join(
                f"{m} {e:.2e}" if e is not None else f"{m} failed" for m, e in validation[key]["errors"].items()))

    cases = make_cases(lf, args)
    for (E, L), case in cases.items():
        ph = {m: lf.phase(case["path"], args.heads, True, args.eps, method=m) for m in ("fast", "chained")}
        case["phase"] = {"score_bound": lb.max_head(ph["fast"], "score_bound"),
                         "centred": lb.max_head(ph["fast"], "centred_score_bound"),
                         "degree": {m: worst_head_degree(p) for m, p in ph.items()}}

    curves = sorted(((E, c, m) for E in args.head_dim for c in modes for m in args.methods),
                    key=lambda k: (PRIORITY[k[2]][0], k[0], k[1]))
    rows = []
    for i, (E, causal, method) in enumerate(curves):
        weights = [PRIORITY[k[2]][1] for k in curves[i:]]
        share = max(budget.left(), 0) * weights[0] / sum(weights)
        rows += run_series(lf, args, budget, share, cases, E, causal, method)
    rows.sort(key=lambda r: (r["E"], r["causal"], r["L"], METHODS.index(r["method"])))

    slope = slopes(rows, args.fit_top)
    record = prov.finish(validation=validation, notes=notes, slopes=slope, rows=rows,
                         timing="best of up to 3 runs (while under --min-time); torch: ms_min of torch_attention.py",
                         torch_version=lb.torch_version(), commands=lf.log)
    out = lb.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lb.write_csv(out / f"{args.name}.csv", rows, COLUMNS)
    lb.write_json(out / f"{args.name}.json", record)
    plot(out / f"{args.name}.png", rows, slope, validation, args, prov)

    lines = [f"log-log slopes over the largest {args.fit_top} L of each method:"]
    lines += [f"  {k:28s} {'-' if v is None else f'{v:.2f}'}" for k, v in slope.items()]
    lines += [f"note: {n}" for n in notes]
    table = "\n".join(lines) + "\n\n" + markdown(rows, slope)
    (out / f"{args.name}.md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {out / args.name}.csv, .json, .md, .png in {record['runtime_seconds']:.0f} s "
          f"(load avg {record['loadavg_before'][0]:.1f} -> {record['loadavg_after'][0]:.1f})", file=sys.stderr)


if __name__ == "__main__":
    main()
