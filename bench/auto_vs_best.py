#!/usr/bin/env python3
"""`--method auto` against the best single method, measured: issue 4's target that auto
is never slower than 1.1x the better of exact and fast.

Grid: E in --head-dim (8 16), L in --lengths (512 ... 32768), causal and bidirectional,
two heads, eps = --eps (1e-3), cases `lorafast case` grad/.../N1/L/E/H2/R4/qv with the
weight gain calibrated to a certified (centred) score bound G = --score-bound (0.5), as
in fast_vs_exact.py. Per point, exact, fast, chained (each at its own degree certified
for eps) and auto are timed in turn, --rounds times, best of each; a method that times
out (after max(5 s, 20x exact's time)) or cannot certify eps counts as losing. The ratio
is auto's time over the fastest of the others, so chained makes the test stricter than
the target (which compares with exact and fast only).

    python3 bench/auto_vs_best.py --omp-wait-policy passive   # the full grid (~6 min)
    python3 bench/auto_vs_best.py --quick                      # E = 8, L <= 2048 (< 1 min)

Writes bench/results/auto_vs_best.{csv,json,md} (--out-dir).
"""
import argparse
import sys

import lfbench as lb

METHODS = ("exact", "fast", "chained", "auto")
COLUMNS = ["E", "causal", "L", "G", "auto_chose", "exact_s", "fast_s", "chained_s", "auto_s", "best", "ratio",
           "within_target"]


def measure(lf, args, E, causal, L):
    name = lb.case_name(L, E, args.heads, causal)
    gain = lb.gain_for_score_bound(lf, name, args.score_bound, args.seed, args.heads, causal)
    case = lf.case(name, gain, args.seed)
    phase = lf.phase(case, args.heads, causal, args.eps)
    best, chose = {}, None
    for _ in range(args.rounds):
        for m in METHODS:
            if best.get(m) == "lost":
                continue
            timeout = 600 if m in ("exact", "auto") else max(5.0, 20 * best.get("exact", 30))
            try:
                res = lf.timed_grad(case, args.heads, causal, m, eps=args.eps, min_time=args.min_time, max_reps=5,
                                    timeout=timeout)
            except lb.RunFailed as e:
                lb.progress(f"  {m}: {e} (counts as losing)")
                best[m] = "lost"
                continue
            best[m] = min(best.get(m, float("inf")), res["seconds"])
            if m == "auto":
                chose = "/".join(f'{h["method"]}{h["degree"] if h["method"] != "exact" else ""}'
                                 for h in res["heads"])
    others = {m: t for m, t in best.items() if m != "auto" and t != "lost"}
    winner = min(others, key=others.get)
    ratio = best["auto"] / others[winner]
    row = {"E": E, "causal": causal, "L": L, "G": lb.max_head(phase, "centred_score_bound"), "auto_chose": chose,
           "best": winner, "ratio": ratio, "within_target": ratio <= args.target}
    row.update({f"{m}_s": (None if t == "lost" else t) for m, t in best.items()})
    return row


def markdown(rows, args):
    out = [f"auto vs the fastest of exact, fast and chained (eps {args.eps:g}, G = {args.score_bound:g}, "
           f"{args.threads} threads, best of {args.rounds} rounds); target ratio <= {args.target:g}", "",
           "| E | mask | L | auto chose | exact s | fast s | chained s | auto s | best | ratio |",
           "|---|---|---|---|---|---|---|---|---|---|"]

    def s(v):
        return "lost" if v is None else f"{v:.4g}"
    for r in rows:
        out.append(f"| {r['E']} | {'causal' if r['causal'] else 'bidir'} | {r['L']} | {r['auto_chose']} | "
                   f"{s(r.get('exact_s'))} | {s(r.get('fast_s'))} | {s(r.get('chained_s'))} | {s(r['auto_s'])} | "
                   f"{r['best']} | {r['ratio']:.2f}{'' if r['within_target'] else ' ✗'} |")
    worst = max(rows, key=lambda r: r["ratio"])
    out += ["", f"worst ratio {worst['ratio']:.2f} (E {worst['E']}, L {worst['L']}, "
                f"{'causal' if worst['causal'] else 'bidir'}); "
                f"{sum(not r['within_target'] for r in rows)} of {len(rows)} points above {args.target:g}"]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--head-dim", type=int, nargs="+", help="E values (default 8 16)")
    ap.add_argument("--lengths", type=int, nargs="+", help="L values (default 512 2048 8192 32768)")
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--score-bound", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds per point (methods alternate)")
    ap.add_argument("--min-time", type=float, default=0.3, help="repeat a timing (<= 5 runs) until this many s")
    ap.add_argument("--target", type=float, default=1.1, help="largest acceptable auto / best")
    ap.add_argument("--quick", action="store_true", help="E = 8, L = 512 2048, one round")
    lb.add_common_args(ap)
    ap.add_argument("--name", default="auto_vs_best", help="output file stem")
    args = ap.parse_args()
    if args.quick:
        args.head_dim = args.head_dim or [8]
        args.lengths = args.lengths or [512, 2048]
        args.rounds = 1
    args.head_dim = args.head_dim or [8, 16]
    args.lengths = args.lengths or [512, 2048, 8192, 32768]

    lf = lb.Lorafast(args.lorafast, args.threads, omp_wait_policy=args.omp_wait_policy)
    prov = lb.Provenance("auto_vs_best.py", args, lf)
    rows = []
    for E in args.head_dim:
        for causal in (True, False):
            for L in args.lengths:
                lb.progress(f"E {E} {'causal' if causal else 'bidir'} L {L}")
                rows.append(measure(lf, args, E, causal, L))
                r = rows[-1]
                lb.progress(f"  auto {r['auto_s']:.4g} s ({r['auto_chose']}), best {r['best']}, "
                            f"ratio {r['ratio']:.2f}")
    out = lb.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lb.write_csv(out / f"{args.name}.csv", rows, COLUMNS)
    table = markdown(rows, args)
    (out / f"{args.name}.md").write_text(table)
    lb.write_json(out / f"{args.name}.json", prov.finish(results=rows, commands=lf.log))
    print(table)
    return 0 if all(r["within_target"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
