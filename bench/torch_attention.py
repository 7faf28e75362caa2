#!/usr/bin/env python3
"""Times one attention forward + backward in PyTorch on the problem `lorafast bench`
times: q, k, v [1, H, L, E] float32 (or bfloat16 with --dtype bf16), random dO, scale
1/sqrt(E), causal or not.

--impl sdpa     torch.nn.functional.scaled_dot_product_attention as PyTorch picks its
                CPU backend (the flash kernel for these inputs; its backward splits
                work over batch x heads only)
--impl math     SDPA restricted to the math backend (the composite: bmm, softmax, bmm)
--impl lorafast lorafast.attention on the same torch tensors: our kernels through the
                Python package (autograd.Function, the GIL released), to measure the
                cost of the Python call against `lorafast bench`

One size per process (peak RSS is per process). Prints one JSON object.
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def attention_fn(impl, causal, threads):
    if impl == "lorafast":
        import lorafast
        return lambda q, k, v: lorafast.attention(q, k, v, causal=causal, method="exact", threads=threads)
    if impl == "math":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def math(q, k, v):
            with sdpa_kernel(SDPBackend.MATH):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return math
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--impl", choices=["sdpa", "math", "lorafast"], default="math")
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=0, help="timed reps (default: >= 3 and --min-time)")
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seq_len)
    L, E, H = args.seq_len, args.head_dim, args.heads
    fn = attention_fn(args.impl, args.causal, args.threads)
    baseline_rss = peak_rss_mb()
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    q, k, v = (torch.randn(1, H, L, E, dtype=dtype, requires_grad=True) for _ in range(3))
    d_o = torch.randn(1, H, L, E, dtype=dtype)

    def step():
        for t in (q, k, v):
            t.grad = None
        fn(q, k, v).backward(d_o)

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
        "impl": args.impl, "dtype": args.dtype, "torch_version": torch.__version__, "threads": torch.get_num_threads(),
        "seq_len": L, "head_dim": E, "heads": H, "causal": args.causal, "reps": len(times),
        "ms_median": ms, "ms_min": min(times), "gflops": flops / (ms * 1e6),
        "peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline_rss,
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
