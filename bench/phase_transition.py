#!/usr/bin/env python3
"""The phase transition, measured: gradient error (vs exact f64) and the method that
`--method auto` chooses, against the score bound G, for L = 1024, 8192, 65536.

For each L the weight gain of `lorafast case` (which scales W_q, W_k and their LoRA B,
so G grows as gain^2) is calibrated so that the certified, centred score bound G (the
one `phase` and the dispatcher use, max over heads) hits each target. At every point:

- `phase --json`: the degree and feature count the certificate needs for --eps, the
  predicted costs and auto's decision with its reason;
- the oracle: `grad --method exact --dtype f64`;
- `grad --method auto` (f32): its error and the method it chose;
- `grad --method fast --degree g0` (f32), g0 = the degree certified for --eps at
  G = --reference-score-bound (0.5): the fast path at a fixed degree, its error rising
  with G (drawn with the certificate's bound for g0, gradient_error_bound of the fast route);
- `grad --method fast --eps` when auto chose exact but a degree within the memory cap
  still certifies --eps and the run is predicted under --max-seconds: the error stays
  below eps, the cost (F = C(E+g, g)) is what grows.

The oracle at L = 65536 takes tens of seconds, so that L gets a sparser G list; points
that do not fit --budget are skipped with a note, largest L last.

    python3 bench/phase_transition.py            # L = 1024, 8192, 65536 (~10 min)
    python3 bench/phase_transition.py --quick    # L = 1024, 8192, 4 values of G (< 1 min)

Writes bench/results/phase_transition.{csv,json,png} (--out-dir).
"""
import argparse
import math
import os
import sys

import lfbench as lb

COLUMNS = ["L", "sqrt_log_L", "target_G", "weight_gain", "G", "G_raw", "gamma", "gamma_over_sqrt_log_L",
           "cert_degree", "cert_features", "cost_exact", "cost_fast", "auto_method", "auto_error", "auto_seconds",
           "forced_degree", "forced_features", "forced_error", "forced_bound", "forced_seconds", "cert_fast_error",
           "cert_fast_seconds", "oracle_seconds", "load1", "reason", "note"]
MEMORY_CAP_FEATURES = 1 << 20  # DispatchRequest::max_features


def taylor_eta(G, g):
    """sup_{|t| <= G} |T_g(t) e^{-t} - 1|, attained at t = G or t = -G for every degree g
    (certificate.cpp), from the tails of the series while they shrink, else directly."""
    def tail(t):
        if abs(t) < g + 2:
            term, total, j = t ** (g + 1) / math.factorial(g + 1), 0.0, g + 1
            while abs(term) > 1e-18 * max(abs(total), 1e-300):
                total += term
                j += 1
                term *= t / j
            return total  # e^t - T_g(t)
        return math.exp(t) - sum(t ** j / math.factorial(j) for j in range(g + 1))
    return max(math.exp(-G) * abs(tail(G)), math.exp(G) * abs(tail(-G)))


def gradient_bound(G, g):
    """gradient_error_bound(G, g, fast) of certificate.hpp: the fast route's backward
    weighs scores by T_{g-1}, so eta_{g-1} enters as well as eta_g."""
    eta = taylor_eta(G, g)
    if eta >= 1:
        return math.inf
    derivative = 1.0 if g == 0 else taylor_eta(G, g - 1)
    return max(2 * eta / (1 - eta), (derivative + eta) / (1 - eta))


def head_max(phase, key):
    vals = [h[key] for h in phase["heads"]]
    return None if any(v is None for v in vals) else max(vals)


def measure_point(lf, args, L, target, gain, g0, oracle_timeout):
    """All runs of one (L, G) point; returns the CSV row."""
    name = lb.case_name(L, args.head_dim, args.heads, args.causal)
    case = lf.case(name, gain, args.seed, out=lf.path("case.safetensors"))
    ph = lf.phase(case, args.heads, args.causal, args.eps)
    try:  # the fast route's own certified degree (auto reports the cheaper route's)
        ph_fast = lf.phase(case, args.heads, args.causal, args.eps, method="fast")
    except lb.RunFailed:  # fast cannot certify eps within the memory cap
        ph_fast = {"heads": [{"degree": None, "features": None}]}
    row = {"L": L, "sqrt_log_L": ph["sqrt_log_L"], "target_G": target, "weight_gain": gain,
           "G": head_max(ph, "centred_score_bound"), "G_raw": head_max(ph, "score_bound"),
           "gamma": max(max(h["gamma_q"], h["gamma_k"]) for h in ph["heads"]),
           "cert_degree": head_max(ph_fast, "degree"), "cert_features": head_max(ph_fast, "features"),
           "cost_exact": head_max(ph, "cost_exact"), "cost_fast": head_max(ph, "cost_fast"),
           "reason": " | ".join(h["reason"] for h in ph["heads"]), "load1": os.getloadavg()[0]}
    row["gamma_over_sqrt_log_L"] = row["gamma"] / row["sqrt_log_L"]
    notes = []
    oracle = lf.grad(case, args.heads, args.causal, "exact", dtype="f64", out=lf.path("oracle.safetensors"),
                     timeout=oracle_timeout)
    row["oracle_seconds"] = oracle["seconds"]
    auto = lf.grad(case, args.heads, args.causal, "auto", eps=args.eps, out=lf.path("auto.safetensors"),
                   timeout=oracle_timeout)
    row.update(auto_method=auto["method"], auto_seconds=auto["seconds"],
               auto_error=lb.gradient_error(auto["out"], oracle["out"]))
    forced_time = None
    try:
        forced = lf.grad(case, args.heads, args.causal, "fast", degree=g0, out=lf.path("forced.safetensors"),
                         timeout=max(3 * args.max_seconds, 60))
        forced_time = forced["seconds"]
        row.update(forced_degree=g0, forced_features=int(max(h["features"] for h in forced["heads"])),
                   forced_seconds=forced_time, forced_error=lb.gradient_error(forced["out"], oracle["out"]),
                   forced_bound=max(math.inf if h["gradient_bound"] is None else h["gradient_bound"]  # null: +inf
                                    for h in forced["heads"]))
    except lb.RunFailed as e:
        notes.append(f"forced degree {g0}: {e}")
    # The certified fast path where auto preferred exact, if it fits the memory cap and time.
    F = row["cert_features"]
    if auto["method"] != "fast" and F is not None and F <= MEMORY_CAP_FEATURES:
        g0_features = row.get("forced_features")
        predicted = forced_time * F / g0_features if forced_time and g0_features else math.inf
        if predicted <= args.max_seconds:
            try:
                cert = lf.grad(case, args.heads, args.causal, "fast", eps=args.eps, out=lf.path("cert.safetensors"),
                               timeout=max(3 * args.max_seconds, 60))
                row.update(cert_fast_seconds=cert["seconds"],
                           cert_fast_error=lb.gradient_error(cert["out"], oracle["out"]))
            except lb.RunFailed as e:
                notes.append(f"certified fast: {e}")
        else:
            notes.append(f"certified fast (degree {row['cert_degree']}, F={F}) skipped: predicted "
                         f"{predicted:.0f} s > --max-seconds {args.max_seconds:g}")
    elif auto["method"] == "fast":
        row.update(cert_fast_seconds=auto["seconds"], cert_fast_error=row["auto_error"])
    row["note"] = "; ".join(notes)
    return row


def auto_marker(method, color):
    """(marker, size, face colour) for the method auto chose: fast, chained, exact or mixed."""
    if method == "fast":
        return "*", 11, color
    if method == "chained":
        return "P", 9, color
    if method == "mixed":
        return "D", 7, "lightgray"
    return "X", 8, "white"


COLORS = {0: "tab:blue", 1: "tab:orange", 2: "tab:green", 3: "tab:purple"}


def plot(path, rows, args, g0, prov):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    Ls = sorted({r["L"] for r in rows if r.get("auto_error") is not None})
    fig, (ax_e, ax_f) = plt.subplots(1, 2, figsize=(14, 5.6), gridspec_kw={"width_ratios": [1.35, 1]})
    measured = [r for r in rows if r.get("auto_error") is not None]
    Gs = [r["G"] for r in measured]
    if not Gs:
        Gs = [0.1, 10]
    grid = np.geomspace(min(Gs) * 0.9, max(Gs) * 1.1, 200)
    bound = [min(gradient_bound(G, g0), 1e3) for G in grid]
    ax_e.plot(grid, bound, ":", color="black", lw=1.2, label=f"certified bound, degree {g0}")
    ax_e.axhline(args.eps, color="red", lw=1, alpha=0.6)
    ax_e.text(grid[0], args.eps * 1.3, f"eps = {args.eps:g}", color="red", fontsize=8)
    for i, L in enumerate(Ls):
        c = COLORS[i % 4]
        sel = sorted((r for r in measured if r["L"] == L), key=lambda r: r["G"])
        fx = [(r["G"], r["forced_error"]) for r in sel if r.get("forced_error") is not None]
        if fx:
            ax_e.plot(*zip(*fx), "o-", color=c, ms=4, label=f"L={L}: fast, forced degree {g0}")
        cx = [(r["G"], r["cert_fast_error"]) for r in sel if r.get("cert_fast_error") is not None]
        if cx:
            ax_e.plot(*zip(*cx), "s--", color=c, ms=3.5, lw=1, alpha=0.8,
                      label=f"L={L}: fast at the degree certified for eps")
        for r in sel:
            marker, ms, mfc = auto_marker(r["auto_method"], c)
            ax_e.plot(r["G"], r["auto_error"], marker, ms=ms, mfc=mfc, mec=c, ls="none")
        ax_e.axvline(sel[0]["sqrt_log_L"], color=c, ls="-.", lw=1, alpha=0.7)
        ax_e.text(sel[0]["sqrt_log_L"], 3e-9 * (3 ** i), f" √log L={sel[0]['sqrt_log_L']:.2f}", color=c,
                  fontsize=7.5)
    ax_e.plot([], [], "*", color="gray", ms=10, ls="none", label="auto → fast (its error)")
    if any(r["auto_method"] == "chained" for r in measured):
        ax_e.plot([], [], "P", color="gray", ms=9, ls="none", label="auto → chained (its error)")
    ax_e.plot([], [], "X", mfc="white", mec="gray", ms=8, ls="none", label="auto → exact f32 (its error)")
    if any(r["auto_method"] == "mixed" for r in measured):
        ax_e.plot([], [], "D", mfc="lightgray", mec="gray", ms=7, ls="none",
                  label="auto → different methods per head")
    ax_e.set_xscale("log")
    ax_e.set_yscale("log")
    ax_e.set_ylim(1e-9, 1e3)
    ax_e.set_xlabel("certified score bound G = max over heads of β·max|q_i|·max|k_j − c| (c: mean key)")
    ax_e.set_ylabel("gradient relative error vs exact f64 (Frobenius, all d_*)")
    ax_e.set_title(f"error vs G (E={args.head_dim}, H={args.heads}, {'causal' if args.causal else 'bidirectional'},"
                   f" f32, eps={args.eps:g})", fontsize=9.5)
    ax_e.grid(True, which="both", alpha=0.25)
    ax_e.legend(fontsize=7, loc="upper left", ncol=2)

    # Right: what the certificate needs (F at the certified degree) against what each L can afford.
    for i, L in enumerate(Ls):
        c = COLORS[i % 4]
        sel = sorted((r for r in measured if r["L"] == L and r.get("cert_features")), key=lambda r: r["G"])
        for r in sel:
            marker, ms, mfc = auto_marker(r["auto_method"], c)
            ax_f.plot(r["G"], r["cert_features"], marker, ms=ms, mfc=mfc, mec=c, ls="none")
        if sel:
            ax_f.plot([r["G"] for r in sel], [r["cert_features"] for r in sel], "-", color=c, lw=0.8, alpha=0.6,
                      label=f"L={L}")
            for r in sel:
                ax_f.annotate(str(r["cert_degree"]), (r["G"], r["cert_features"]), textcoords="offset points",
                              xytext=(0, 7), fontsize=6.5, color=c, ha="center")
            # Cost model break-even: fast cheaper while cost_fast(F) < cost_exact; cost_fast is linear in F + C.
            r0 = sel[0]
            per_f = r0["cost_fast"] / (r0["cert_features"] + (64 if args.causal else 0))
            f_even = r0["cost_exact"] / per_f - (64 if args.causal else 0)
            ax_f.axhline(f_even, color=c, ls="--", lw=1)
            ax_f.text(ax_f.get_xlim()[0] if False else min(Gs), f_even * 1.15,
                      f"L={L}: predicted break-even F", color=c, fontsize=7)
        ax_f.axvline(sel[0]["sqrt_log_L"] if sel else 1, color=c, ls="-.", lw=1, alpha=0.7)
    ax_f.axhline(MEMORY_CAP_FEATURES, color="black", lw=1)
    ax_f.text(min(Gs), MEMORY_CAP_FEATURES * 1.15, "memory cap on F (2^20)", fontsize=7)
    ax_f.set_xscale("log")
    # Recent matplotlib labels the minor ticks of a log axis this short; here they overlap.
    ax_f.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax_f.set_yscale("log")
    ax_f.set_xlabel("certified score bound G")
    ax_f.set_ylabel(f"features F = C(E+g, g) needed for eps (degree g annotated)")
    ax_f.set_title("what auto weighs: F needed (head with the largest G) vs the cost model's break-even\n"
                   "★ auto chose fast, ✕ exact, ◆ per head mixed (exact predicted cheaper, or F over the cap)",
                   fontsize=8.5)
    ax_f.grid(True, which="both", alpha=0.25)
    ax_f.legend(fontsize=7, loc="lower right")
    fig.suptitle("Phase transition of the LoRA attention gradient: polynomial (fast) path vs G; "
                 "dash-dot lines: G = √(log L)", fontsize=10)
    fig.text(0.005, 0.003, prov.caption(), fontsize=6, color="dimgray")
    fig.tight_layout(rect=(0, 0.015, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(rows):
    out = ["| L | √log L | G | Γ/√log L | degree for eps | F | auto | auto error | fast@g0 error | fast@cert error |",
           "|---:|---:|---:|---:|---:|---:|:---|---:|---:|---:|"]

    def f(v, spec):
        return "—" if v is None else format(v, spec)

    for r in rows:
        if r.get("auto_error") is None:
            continue
        out.append(f"| {r['L']} | {r['sqrt_log_L']:.2f} | {r['G']:.3g} | {r['gamma_over_sqrt_log_L']:.2f} | "
                   f"{f(r['cert_degree'], 'd')} | {f(r['cert_features'], 'd')} | {r['auto_method']} | "
                   f"{r['auto_error']:.1e} | {f(r.get('forced_error'), '.1e')} | "
                   f"{f(r.get('cert_fast_error'), '.1e')} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-len", type=int, nargs="+", default=[1024, 8192, 65536])
    ap.add_argument("--score-bounds", type=float, nargs="+",
                    default=[0.125, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 8, 12, 16],
                    help="target centred score bounds G (L < --sparse-from)")
    ap.add_argument("--sparse-from", type=int, default=32768, help="L from which --sparse-score-bounds is used")
    ap.add_argument("--sparse-score-bounds", type=float, nargs="+", default=[0.5, 3, 1.5, 8, 1, 5, 2, 16],
                    help="G targets at large L, in priority order (the f64 oracle is slow there)")
    ap.add_argument("--reference-score-bound", type=float, default=0.5,
                    help="g0 = the degree certified for eps at this G (the regime of fast_vs_exact.py)")
    ap.add_argument("--forced-degree", type=int, help="override g0")
    ap.add_argument("--head-dim", type=int, default=8)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--bidirectional", dest="causal", action="store_false", help="no causal mask")
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--max-seconds", type=float, default=20.0, help="skip a fast run predicted slower than this")
    ap.add_argument("--budget", type=float, default=540.0, help="total seconds; later (larger L) points skipped")
    ap.add_argument("--quick", action="store_true", help="L = 1024, 8192 and G = 0.25, 1, 3, 6")
    lb.add_common_args(ap)
    lb.add_replot_args(ap, "phase_transition")
    args = ap.parse_args()
    if args.replot:
        out, prov = lb.previous_run(args)
        saved = argparse.Namespace(**prov.record["settings"])
        plot(out / f"{args.name}.png", prov.record["rows"], saved, prov.record["forced_degree"], prov)
        return
    if args.quick:
        args.seq_len = [L for L in args.seq_len if L <= 8192]
        args.score_bounds = [0.25, 1, 3, 6]
        args.budget = min(args.budget, 45.0)
        args.max_seconds = min(args.max_seconds, 3.0)

    lf = lb.Lorafast(args.lorafast, args.threads, omp_wait_policy=args.omp_wait_policy)
    prov = lb.Provenance("phase_transition.py", args, lf)
    budget = lb.Budget(args.budget)

    g0 = args.forced_degree
    if g0 is None:
        name = lb.case_name(args.seq_len[0], args.head_dim, args.heads, args.causal)
        gain = lb.gain_for_score_bound(lf, name, args.reference_score_bound, args.seed, args.heads, args.causal)
        ph = lf.phase(lf.case(name, gain, args.seed), args.heads, args.causal, args.eps, method="fast")
        g0 = head_max(ph, "degree")
    lb.progress(f"forced degree g0 = {g0} (certified for eps {args.eps:g} at G = {args.reference_score_bound:g})")

    rows, last_oracle = [], None  # (L, seconds) of the last f64 oracle, to predict the next
    for L in sorted(args.seq_len):
        name = lb.case_name(L, args.head_dim, args.heads, args.causal)
        ref = lf.phase(lf.case(name, 1.0, args.seed), args.heads, args.causal, args.eps)
        g1 = head_max(ref, "centred_score_bound")
        targets = args.sparse_score_bounds if L >= args.sparse_from else args.score_bounds
        for target in targets:
            gain = math.sqrt(target / g1)
            predicted = 0.0 if last_oracle is None else last_oracle[1] * (L / last_oracle[0]) ** 2
            # A point costs the oracle plus (at most) an exact f32 auto run and two fast runs.
            if last_oracle is not None and not budget.allows(1.5 * predicted):
                rows.append({"L": L, "sqrt_log_L": ref["sqrt_log_L"], "target_G": target, "weight_gain": gain,
                             "note": f"skipped: predicted f64 oracle {predicted:.0f} s, {budget.left():.0f} s left "
                                     f"of --budget {args.budget:g}"})
                lb.progress(f"L={L:6d} G={target:6.3f} {rows[-1]['note']}")
                continue
            try:
                row = measure_point(lf, args, L, target, gain, g0, oracle_timeout=max(10 * predicted, 600))
            except lb.RunFailed as e:
                row = {"L": L, "target_G": target, "weight_gain": gain, "note": f"failed: {e}"}
                rows.append(row)
                lb.progress(f"L={L:6d} G={target:6.3f} {row['note']}")
                continue
            rows.append(row)
            last_oracle = (L, row["oracle_seconds"])
            lb.progress(f"L={L:6d} G={row['G']:6.3f} auto={row['auto_method']:5s} err {row['auto_error']:.1e} | "
                        f"fast@{g0} err {row.get('forced_error', float('nan')):.1e} | "
                        f"cert g={row['cert_degree']} F={row['cert_features']} err "
                        f"{row.get('cert_fast_error', float('nan')):.1e} | oracle {row['oracle_seconds']:.1f} s"
                        + (f" | {row['note']}" if row["note"] else ""))

    record = prov.finish(forced_degree=g0, rows=rows, torch_version=None, commands=lf.log,
                         certificate="gradient_error_bound(G, g, fast) = max(2 eta_g, eta_{g-1} + eta_g) / (1 - eta_g), eta_g = sup |T_g(t) e^-t - 1| on [-G, G] (certificate.hpp)")
    out = lb.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lb.write_csv(out / f"{args.name}.csv", rows, COLUMNS)
    lb.write_json(out / f"{args.name}.json", record)
    plot(out / f"{args.name}.png", rows, args, g0, prov)
    table = (f"g0 = {g0} (degree certified for eps = {args.eps:g} at G = {args.reference_score_bound:g})\n\n"
             + markdown(rows))
    (out / f"{args.name}.md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {out / args.name}.csv, .json, .md, .png in {record['runtime_seconds']:.0f} s "
          f"(load avg {record['loadavg_before'][0]:.1f} -> {record['loadavg_after'][0]:.1f})", file=sys.stderr)


if __name__ == "__main__":
    main()
