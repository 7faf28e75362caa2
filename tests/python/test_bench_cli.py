"""`lorafast bench` on both layouts: [N, L, H*E] (nlhe, the models' projections) and
[N, H, L, E] (nhle, SDPA's). bench checks rows of O and dQ against a double-precision
recomputation read through the same layout before it times anything and exits 4 when
they disagree, so a layout the kernels or the check misread fails here."""

import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lfcase  # noqa: E402
from lfcase import check  # noqa: E402

harness = lfcase.Harness(__doc__)


def bench(binary, *extra):
    return lfcase.run_lorafast(binary, ["bench", "--seq-len", "150", "--head-dim", "8", "--heads", "3", "--batch", "2",
                                        "--reps", "1", "--gemm-size", "32", "--json", *extra])


@harness.test
def both_layouts_pass_the_double_check(binary):
    for layout in ("nlhe", "nhle"):
        for causal in ([], ["--causal"]):
            rc, stdout, stderr = bench(binary, "--layout", layout, *causal)
            check(rc == 0, "--layout %s %s: exit %d: %s" % (layout, causal, rc, stderr[-300:]))
            check(json.loads(stdout)["results"][0]["seq_len"] == 150, "results %s" % stdout[:200])


@harness.test
def f32_runs_report_the_multiply_add_peak(binary):
    """The peak is measured in f32 only; each size's percentage is of that peak, and a
    kernel can never beat it (5% slack: the sgemm and the peak are timed in turn, not at
    once, on a host whose speed drifts)."""
    rc, stdout, stderr = bench(binary, "--min-time", "0.05")
    check(rc == 0, "exit %d: %s" % (rc, stderr[-300:]))
    out = json.loads(stdout)
    peak, row = out["fma_peak"], out["results"][0]
    check(peak["gflops"] > 0 and peak["vector_bits"] in (0, 256, 512), "fma_peak %s" % peak)
    check(abs(row["pct_fma_peak"] - 100 * row["gflops"] / peak["gflops"]) < 1e-9 * row["pct_fma_peak"], "row %s" % row)
    check(out["gemm"]["gflops"] <= 1.05 * peak["gflops"], "sgemm %s above the peak %s" % (out["gemm"], peak))
    rc, stdout, stderr = bench(binary, "--dtype", "f64")
    check(rc == 0, "f64: exit %d: %s" % (rc, stderr[-300:]))
    out = json.loads(stdout)
    check(out["fma_peak"] is None and "pct_fma_peak" not in out["results"][0], "f64 %s" % stdout[:300])


@harness.test
def the_bf16_peak_is_reported_where_the_cpu_has_bf16_dot_products(binary):
    """The bf16 ceiling sits beside the f32 one in every run, f64 included, and is
    absent exactly on CPUs without AVX512-BF16 (the flag Linux lists in /proc/cpuinfo)."""
    with open("/proc/cpuinfo") as f:
        has_bf16 = any(line.startswith("flags") and " avx512_bf16" in line for line in f)
    for dtype in ("f32", "f64"):
        rc, stdout, stderr = bench(binary, "--dtype", dtype, "--min-time", "0.05")
        check(rc == 0, "%s: exit %d: %s" % (dtype, rc, stderr[-300:]))
        peak = json.loads(stdout)["bf16_peak"]
        if has_bf16:
            check(peak is not None and peak["gflops"] > 0 and peak["vector_bits"] == 512, "bf16_peak %s" % peak)
        else:
            check(peak is None, "bf16_peak %s on a CPU without avx512_bf16" % peak)


@harness.test
def unknown_layout_is_a_usage_error(binary):
    rc, _, stderr = bench(binary, "--layout", "nhel")
    check(rc == 2 and "--layout" in stderr, "exit %d: %s" % (rc, stderr[-300:]))


if __name__ == "__main__":
    sys.exit(harness.main())
