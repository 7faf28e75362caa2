#!/usr/bin/env python3
"""Crossover length: the smallest L where the fast (almost-linear) LoRA attention
gradient beats the exact one, by measurement, for each head width E and target eps.

Cases: `lorafast case` grad/.../N1/L/E/H2/R4/qv with the weight gain calibrated per
(E, L) to a certified (centred) score bound G = --score-bound (0.5), as in
fast_vs_exact.py. Per (E, mask), exact is timed once per L (it does not depend on eps);
per (E, eps, mask), fast runs at the degree certified for eps on the head with the
largest G, forced on both heads (timings are shared between eps values that need the
same degree). L doubles from --min-len
until fast wins; the bracket [L/2, L] is then refined at its geometric midpoint. The
search stops early, with an extrapolated estimate (intersection of the log-log lines
through each method's last two points), when the next run is predicted to exceed
--max-seconds, the configuration's share of --budget, or when the extrapolated
crossover lies beyond --max-len. Before timing, every (E, eps, mask) is validated: the
fast gradient's error vs exact f64 at --validate-len must be <= eps.

Also reported: the crossover the dispatcher's cost model predicts (`phase`: the smallest
L with cost_fast < cost_exact), i.e. where `--method auto` switches to fast.

    python3 bench/crossover.py            # E = 4, 8, 16; eps = 1e-2, 1e-3, 1e-4; causal and not
    python3 bench/crossover.py --quick    # E = 4, 8; eps = 1e-2, 1e-3; bidirectional (< 1 min)

Writes bench/results/crossover.{csv,json,png} and crossover_timings.csv (--out-dir).
"""
import argparse
import math
import os
import sys

import lfbench as lb

COLUMNS = ["E", "eps", "causal", "degree", "features", "validate_error", "crossover_L", "bracket_lo",
           "bracket_hi", "interpolated_L", "extrapolated_L", "model_L", "status", "note"]
TIMING_COLUMNS = ["E", "causal", "L", "method", "degree", "features", "seconds", "reps", "weight_gain", "G",
                  "load1"]


class Timer:
    """Cached timings of one (E, mask): exact per L, fast per (L, per-head degrees)."""

    def __init__(self, lf, args, E, causal):
        self.lf, self.args, self.E, self.causal = lf, args, E, causal
        self.cases = {}
        self.times = {}
        self.rows = []

    def case(self, L):
        if L not in self.cases:
            name = lb.case_name(L, self.E, self.args.heads, True)
            gain = lb.gain_for_score_bound(self.lf, name, self.args.score_bound, self.args.seed, self.args.heads,
                                           True)
            path = self.lf.case(name, gain, self.args.seed, out=self.lf.path(f"case_E{self.E}_L{L}.safetensors"))
            self.cases[L] = {"path": path, "gain": gain, "phase": {}}
        return self.cases[L]

    def phase(self, L, eps, method="fast"):
        """phase at (L, eps): with method "fast" its certified degree (what is timed),
        with "auto" the dispatcher's own choice (for model_crossover)."""
        c = self.case(L)
        if (eps, method) not in c["phase"]:
            try:
                ph = self.lf.phase(c["path"], self.args.heads, self.causal, eps,
                                   method=None if method == "auto" else method)
            except lb.RunFailed:  # the method cannot certify eps (exit 4): no degree
                ph = self.lf.phase(c["path"], self.args.heads, self.causal, eps)
                ph = dict(ph, heads=[dict(h, degree=None, features=None) for h in ph["heads"]])
            c["phase"][eps, method] = ph
        return c["phase"][eps, method]

    def degree(self, L, eps):
        """The degree certified for eps on the head with the largest G, used for both
        heads: per-head degrees flip with the other head's G from one L to the next,
        which would mix two feature counts in one curve. None if nothing certifies."""
        degrees = [h["degree"] for h in self.phase(L, eps)["heads"]]
        return None if None in degrees else max(degrees)

    def features(self, L, eps):
        heads = self.phase(L, eps)["heads"]
        return next(h["features"] for h in heads if h["degree"] == self.degree(L, eps))

    def key(self, L, method, eps):
        return (L, "exact") if method == "exact" else (L, "fast", self.degree(L, eps))

    def known(self, L, method, eps):
        return self.times.get(self.key(L, method, eps))

    def time(self, L, method, eps):
        """Seconds (best of reps) of one method at L; cached. fast runs --degree g."""
        key = self.key(L, method, eps)
        if key not in self.times:
            c = self.case(L)
            if method == "fast" and key[2] is None:
                raise lb.RunFailed(f"no degree certifies eps {eps:g} at L={L}")
            res = self.lf.timed_grad(c["path"], self.args.heads, self.causal, method,
                                     degree=None if method == "exact" else key[2], min_time=self.args.min_time,
                                     timeout=max(3 * self.args.max_seconds, 60))
            self.times[key] = res["seconds"]
            ph = self.phase(L, eps)
            self.rows.append({"E": self.E, "causal": int(self.causal), "L": L, "method": method,
                              "degree": "" if method == "exact" else key[2],
                              "features": "" if method == "exact" else self.features(L, eps),
                              "seconds": res["seconds"], "reps": res["reps"], "weight_gain": c["gain"],
                              "G": max(h["centred_score_bound"] for h in ph["heads"]), "load1": os.getloadavg()[0]})
            lb.progress(f"  E={self.E:2d} causal={int(self.causal)} L={L:6d} {method:5s}"
                        f"{'' if method == 'exact' else f' g={key[2]}'} {res['seconds']:9.4f} s")
        return self.times[key]


def model_crossover(timer, eps, L_ref):
    """Smallest L with cost_fast < cost_exact in the dispatcher's cost model, from the
    predicted costs at L_ref (exact ~ L^2, fast ~ L; the certified degree is taken at L_ref):
    where `--method auto` switches to fast for the head with the largest G."""
    ph = timer.phase(L_ref, eps, "auto")
    h = max(ph["heads"], key=lambda h: h["centred_score_bound"])
    return None if h["cost_fast"] is None else L_ref * h["cost_fast"] / h["cost_exact"]


def extrapolate(fast_pts, exact_pts):
    """Crossover estimate from the last L measured, assuming t_fast ~ L and t_exact ~ L^2
    from there on (ratio ~ 1/L). At small L exact grows slower than L^2 (overheads), so
    this tends to underestimate: it is used to stop hopeless searches early."""
    if not fast_pts or not exact_pts:
        return None
    (L, tf), (_, te) = fast_pts[-1], exact_pts[-1]
    return L * tf / te


def predict(pts, L, exponent):
    if not pts:
        return 0.0
    L0, t0 = pts[-1]
    return t0 * (L / L0) ** exponent


def search(timer, args, eps, budget, share):
    """The doubling search for one (E, eps, mask). Returns the result row."""
    E, causal = timer.E, timer.causal
    row = {"E": E, "eps": eps, "causal": int(causal)}
    deadline = budget.left() - share
    fast_pts, exact_pts = [], []
    lo = None
    L = args.min_len
    while True:
        for method, pts, exponent in (("exact", exact_pts, 2.0), ("fast", fast_pts, 1.0)):
            if timer.known(L, method, eps) is not None:
                continue
            predicted = predict(pts, L, exponent)
            if predicted > args.max_seconds:
                row["note"] = f"{method} at L={L} predicted {predicted:.0f} s > --max-seconds {args.max_seconds:g}"
            elif pts and predicted > budget.left() - deadline:
                row["note"] = f"{method} at L={L} predicted {predicted:.0f} s > what is left of this share of --budget"
            if row.get("note"):
                break
        if row.get("note"):
            break
        try:
            t_exact, t_fast = timer.time(L, "exact", eps), timer.time(L, "fast", eps)
        except lb.RunFailed as e:
            row["note"] = f"L={L}: {e}"
            break
        exact_pts.append((L, t_exact))
        fast_pts.append((L, t_fast))
        if t_fast < t_exact:
            row.update(status="measured", crossover_L=L, bracket_lo=lo, bracket_hi=L)
            break
        lo = L
        ext = extrapolate(fast_pts, exact_pts)
        if ext is not None and ext > 4 * args.max_len and L >= args.extrapolate_from:
            row["note"] = f"extrapolated crossover {ext:.3g} > 4 x --max-len {args.max_len}: stopped"
            break
        if 2 * L > args.max_len:
            row["note"] = f"no crossover up to --max-len {args.max_len}"
            break
        L *= 2
    L_last = fast_pts[-1][0] if fast_pts else args.min_len
    row["degree"], row["features"] = timer.degree(L_last, eps), timer.features(L_last, eps)
    if row.get("status") == "measured" and lo is not None and args.refine:
        mid = int(round(math.sqrt(lo * row["crossover_L"]) / 64) * 64)
        if lo < mid < row["crossover_L"]:
            try:
                t_exact, t_fast = timer.time(mid, "exact", eps), timer.time(mid, "fast", eps)
                if t_fast < t_exact:
                    row.update(crossover_L=mid, bracket_hi=mid)
                else:
                    row["bracket_lo"] = mid
            except lb.RunFailed as e:
                row["note"] = f"refine at L={mid}: {e}"
    if row.get("status") == "measured" and row.get("bracket_lo"):
        a, b = row["bracket_lo"], row["bracket_hi"]
        ra = timer.known(a, "fast", eps) / timer.known(a, "exact", eps)
        rb = timer.known(b, "fast", eps) / timer.known(b, "exact", eps)
        # log(ratio) linear in log L between the bracket ends; ratio = 1 there.
        row["interpolated_L"] = math.exp(math.log(a) + math.log(ra) / (math.log(ra) - math.log(rb))
                                         * (math.log(b) - math.log(a)))
    elif row.get("status") == "measured":
        row["status"] = "measured (at the smallest L tried)"
    else:
        row["status"] = f"not found up to L={fast_pts[-1][0]}" if fast_pts else "not measured"
        row["extrapolated_L"] = extrapolate(fast_pts, exact_pts)
    row["model_L"] = model_crossover(timer, eps, fast_pts[-1][0] if fast_pts else args.min_len)
    return row


def validate(timer, args, eps):
    """Error of the fast gradient as timed (--degree of the worst head) vs exact f64 at
    --validate-len (same G); must be <= eps."""
    lf, c = timer.lf, timer.case(args.validate_len)
    ref = lf.grad(c["path"], args.heads, timer.causal, "exact", dtype="f64", out=lf.path("ref.safetensors"),
                  timeout=600)
    degree = timer.degree(args.validate_len, eps)
    if degree is None:
        raise lb.RunFailed(f"no degree certifies eps {eps:g}")
    res = lf.grad(c["path"], args.heads, timer.causal, "fast", degree=degree, timeout=600)
    return lb.gradient_error(res["out"], ref["out"])


def plot(path, results, timings, args, prov):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = sorted({r["causal"] for r in results})
    fig, axes = plt.subplots(1, 1 + len(modes), figsize=(5.6 * (1 + len(modes)), 4.8))
    ax = axes[0]
    from matplotlib.lines import Line2D
    colors = {1e-2: "tab:green", 1e-3: "tab:blue", 1e-4: "tab:purple"}
    eps_list = sorted({r["eps"] for r in results}, reverse=True)
    for k, eps in enumerate(eps_list):
        c = colors.get(eps, "black")
        shift = 1.06 ** (k - (len(eps_list) - 1) / 2)  # eps values that need the same degree overlap
        for causal, style in ((0, "-"), (1, "--")):
            sel = sorted((r for r in results if r["eps"] == eps and r["causal"] == causal), key=lambda r: r["E"])
            if not sel:
                continue
            pts = [(r["E"] * shift, r.get("interpolated_L") or r["crossover_L"]) for r in sel if r.get("crossover_L")]
            if pts:
                ax.plot(*zip(*pts), "o" + style, color=c)
            ex = [(r["E"] * shift, r["extrapolated_L"]) for r in sel if r.get("extrapolated_L")]
            if ex:
                ax.plot(*zip(*ex), "^", mfc="white", mec=c, ls="none", ms=8)
            ml = [(r["E"] * shift, r["model_L"]) for r in sel if r.get("model_L")]
            if ml:
                ax.plot(*zip(*ml), "x", color=c, ls=":" if causal else (0, (1, 4)), alpha=0.6, ms=6)
    handles = [Line2D([], [], color=colors.get(e, "black"), lw=3, label=f"eps = {e:g}") for e in eps_list]
    handles += [Line2D([], [], color="gray", ls="-", marker="o", label="measured, bidirectional"),
                Line2D([], [], color="gray", ls="--", marker="o", label="measured, causal"),
                Line2D([], [], color="gray", ls="none", marker="^", mfc="white", ms=8,
                       label="not reached by --max-len/time: extrapolated"),
                Line2D([], [], color="gray", ls=":", marker="x", label="cost model (where auto switches)")]
    ax.axhline(args.max_len, color="gray", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xticks(sorted({r["E"] for r in results}))
    ax.set_xticklabels([str(e) for e in sorted({r["E"] for r in results})])
    ax.minorticks_off()
    ax.set_xlabel("head width E")
    ax.set_ylabel("crossover L (fast faster than exact from here)")
    ax.set_title(f"crossover L, G≈{args.score_bound:g}, H={args.heads} (measured: interpolated in the\n"
                 f"bracket; eps values needing the same degree overlap; gray line: --max-len)", fontsize=8.5)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    # Ratio plots: t_fast / t_exact against L, one line per (E, degrees).
    for ax, causal in zip(axes[1:], modes):
        for E, c in zip(sorted({r["E"] for r in timings}), ("tab:green", "tab:blue", "tab:red", "tab:purple")):
            exact = {r["L"]: r["seconds"] for r in timings
                     if (r["E"], r["causal"], r["method"]) == (E, causal, "exact")}
            for k, deg in enumerate(sorted({r["degree"] for r in timings if r["method"] == "fast" and r["E"] == E
                                            and r["causal"] == causal})):
                pts = sorted((r["L"], r["seconds"] / exact[r["L"]]) for r in timings
                             if (r["E"], r["causal"], r["method"], r["degree"]) == (E, causal, "fast", deg)
                             and r["L"] in exact)
                if pts:
                    feats = next(r["features"] for r in timings if r["degree"] == deg and r["E"] == E)
                    ax.plot(*zip(*pts), "os^D"[k % 4] + "-", color=c, ms=4, alpha=1 - 0.25 * k,
                            label=f"E={E}, degree {deg} (F={feats})")
        ax.axhline(1, color="black", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L")
        ax.set_ylabel("t_fast / t_exact (below 1: fast wins)")
        ax.set_title(f"{'causal' if causal else 'bidirectional'}: measured time ratio", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5)
    fig.suptitle("Where the almost-linear gradient starts to pay off", fontsize=10)
    fig.text(0.005, 0.003, prov.caption(), fontsize=6, color="dimgray")
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fmt_L(v):
    return "—" if v is None else f"{v:,.0f}"


def markdown(results):
    out = ["| E | eps | mask | degree | F | crossover L (grid) | interpolated | cost model | note |",
           "|---:|---:|:---|:---|:---|---:|---:|---:|:---|"]
    for r in results:
        meas = fmt_L(r.get("crossover_L")) if r.get("crossover_L") else \
            (f"> {r['status'].split('L=')[-1]}" if "not found" in r.get("status", "") else "—")
        interp = fmt_L(r.get("interpolated_L")) if r.get("interpolated_L") else \
            (f"≈ {fmt_L(r['extrapolated_L'])} (extrap.)" if r.get("extrapolated_L") else "—")
        out.append(f"| {r['E']} | {r['eps']:g} | {'causal' if r['causal'] else 'bidir'} | {r['degree']} | "
                   f"{r['features']} | {meas} | {interp} | {fmt_L(r.get('model_L'))} | {r.get('note', '')} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--head-dim", type=int, nargs="+", help="E values (default 4 8 16)")
    ap.add_argument("--eps", type=float, nargs="+", help="targets (default 1e-2 1e-3 1e-4)")
    ap.add_argument("--causal", choices=["both", "yes", "no"], help="mask (default both; --quick: no)")
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--score-bound", type=float, default=0.5)
    ap.add_argument("--min-len", type=int, default=128)
    ap.add_argument("--max-len", type=int, default=65536)
    ap.add_argument("--extrapolate-from", type=int, default=4096,
                    help="stop a hopeless search early only from this L on (exact is ~L^2 there)")
    ap.add_argument("--no-refine", dest="refine", action="store_false", help="no midpoint refinement")
    ap.add_argument("--min-time", type=float, default=0.5, help="repeat a point (<= 10 runs) until this many s")
    ap.add_argument("--max-seconds", type=float, default=30.0, help="stop a search before a slower run")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for all searches (validation on top)")
    ap.add_argument("--validate-len", type=int, default=512)
    ap.add_argument("--quick", action="store_true", help="E = 4, 8; eps = 1e-2, 1e-3; bidirectional; budget 30 s")
    lb.add_common_args(ap)
    lb.add_replot_args(ap, "crossover")
    args = ap.parse_args()
    if args.replot:
        out, prov = lb.previous_run(args)
        rec = prov.record
        plot(out / f"{args.name}.png", rec["results"], rec["timings"], argparse.Namespace(**rec["settings"]), prov)
        return
    if args.quick:
        args.head_dim = args.head_dim or [4, 8]
        args.eps = args.eps or [1e-2, 1e-3]
        args.causal = args.causal or "no"
        args.budget = min(args.budget, 30.0)
        args.max_seconds = min(args.max_seconds, 4.0)
        args.min_time = min(args.min_time, 0.2)
    args.head_dim = args.head_dim or [4, 8, 16]
    args.eps = sorted(args.eps or [1e-2, 1e-3, 1e-4], reverse=True)
    args.causal = args.causal or "both"

    lf = lb.Lorafast(args.lorafast, args.threads, omp_wait_policy=args.omp_wait_policy)
    prov = lb.Provenance("crossover.py", args, lf)
    budget = lb.Budget(args.budget)
    modes = {"both": [False, True], "yes": [True], "no": [False]}[args.causal]
    timers = {(E, c): Timer(lf, args, E, c) for E in args.head_dim for c in modes}

    validation = {}
    for (E, causal), timer in timers.items():
        for eps in args.eps:
            try:
                err = validate(timer, args, eps)
            except lb.RunFailed as e:
                err = None
                lb.progress(f"validate E={E} causal={int(causal)} eps={eps:g}: {e}")
            validation[(E, causal, eps)] = err
            lb.progress(f"validate E={E} causal={int(causal)} eps={eps:g} L={args.validate_len}: error "
                        f"{'failed' if err is None else f'{err:.2e}'}")

    configs = [(E, c, eps) for E in args.head_dim for c in modes for eps in args.eps]
    results = []
    for i, (E, causal, eps) in enumerate(configs):
        share = max(budget.left(), 0) / (len(configs) - i)
        lb.progress(f"search E={E} causal={int(causal)} eps={eps:g} (share {share:.0f} s)")
        row = search(timers[(E, causal)], args, eps, budget, share)
        err = validation[(E, causal, eps)]
        row["validate_error"] = err
        if err is None or err > eps:
            row["note"] = ((row.get("note") or "") + f"; VALIDATION FAILED: error {err} > eps {eps:g} at "
                           f"L={args.validate_len}").lstrip("; ")
        results.append(row)
        lb.progress(f"  -> {row['status']}: crossover {fmt_L(row.get('crossover_L'))}, interpolated "
                    f"{fmt_L(row.get('interpolated_L'))}, extrapolated {fmt_L(row.get('extrapolated_L'))}, "
                    f"model {fmt_L(row.get('model_L'))} {row.get('note', '')}")

    timings = sorted((r for t in timers.values() for r in t.rows),
                     key=lambda r: (r["E"], r["causal"], r["method"], str(r["degree"]), r["L"]))
    record = prov.finish(results=results, timings=timings, commands=lf.log,
                         validation={f"E{E}/{'causal' if c else 'bidir'}/eps{eps:g}": v
                                     for (E, c, eps), v in validation.items()},
                         timing="best of up to 10 runs while under --min-time (one run when slower)")
    out = lb.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lb.write_csv(out / f"{args.name}.csv", results, COLUMNS)
    lb.write_csv(out / f"{args.name}_timings.csv", timings, TIMING_COLUMNS)
    lb.write_json(out / f"{args.name}.json", record)
    plot(out / f"{args.name}.png", results, timings, args, prov)
    table = markdown(results)
    (out / f"{args.name}.md").write_text(table + "\n")
    print(table)
    print(f"\nwrote {out / args.name}.csv, _timings.csv, .json, .md, .png in {record['runtime_seconds']:.0f} s "
          f"(load avg {record['loadavg_before'][0]:.1f} -> {record['loadavg_after'][0]:.1f})", file=sys.stderr)


if __name__ == "__main__":
    main()
