#!/usr/bin/env python3
"""Times PyTorch eager autograd on the problem `lorafast bench` times: one head-batched
attention forward + backward, q, k, v: [H, L, E] float32, random dO.

One size per process (peak RSS is per process). Prints one JSON object.
PyTorch 1.13 has no public scaled_dot_product_attention, so this is the composite
that its own nn.MultiheadAttention runs: scale q (cheaper than scaling the L x L
scores, same result), bmm, mask in place with a real -inf, softmax, bmm.
"""
import argparse
import json
import math
import resource
import statistics
import sys
import time

import torch


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=0, help="timed reps (default: >= 3 and --min-time)")
    ap.add_argument("--min-time", type=float, default=1.0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seq_len)
    L, E, H = args.seq_len, args.head_dim, args.heads
    baseline_rss = peak_rss_mb()
    q, k, v = (torch.randn(H, L, E, requires_grad=True) for _ in range(3))
    d_o = torch.randn(H, L, E)
    scale = 1.0 / math.sqrt(E)
    mask = torch.ones(L, L, dtype=torch.bool).triu_(1) if args.causal else None  # not timed

    def step():
        for t in (q, k, v):
            t.grad = None
        s = torch.bmm(q * scale, k.transpose(1, 2))  # [H, L, L]
        if mask is not None:
            s.masked_fill_(mask, float("-inf"))  # bmm's backward does not need its output
        o = torch.bmm(torch.softmax(s, dim=-1), v)
        del s
        o.backward(d_o)

    step()  # warm-up
    times, start = [], time.perf_counter()
    while True:
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
        if args.reps > 0:
            if len(times) >= args.reps:
                break
        elif len(times) >= 3 and time.perf_counter() - start >= args.min_time:
            break
    ms = statistics.median(times)
    flops = 14.0 * L * L * E * H * (0.5 if args.causal else 1.0)  # nominal, as lorafast bench
    json.dump({
        "impl": "torch", "torch_version": torch.__version__, "threads": torch.get_num_threads(),
        "seq_len": L, "head_dim": E, "heads": H, "causal": args.causal, "reps": len(times),
        "ms_median": ms, "ms_min": min(times), "gflops": flops / (ms * 1e6),
        "peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline_rss,
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
