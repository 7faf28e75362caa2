"""`lorafast phase` (INTERFACE.md): JSON fields, soundness of the score bound against
the brute-force scores of the same case (numpy, float64), and the decision on the two
sides of the phase transition (small projections at long L -> fast; scaled-up
weights -> exact, with a reason).

Brute force: Q = X W_q_eff^T, K = X W_k_eff^T with W_eff = W + s B A (SPEC.md §1),
S_h = beta Q_h K_h^T per sequence and head. The reported bounds must hold for every
entry: score_bound >= max |S_ij| and centred_score_bound >= max |S_ij - beta q_i.c| with
c the mean key, or with --causal the mean of the first CAUSAL_CHUNK keys (the row shift
softmax ignores, SPEC §3.1; the first chunk keeps the causal surrogate causal).
"""

import json
import math
import os
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import lfcase  # noqa: E402
from lfcase import check  # noqa: E402

harness = lfcase.Harness(__doc__)

HEAD_KEYS = {"gamma_q", "gamma_k", "score_bound", "degree", "features", "cost_exact", "cost_fast",
             "method", "reason"}
# The bounds are computed in double with a 1e-9 relative safety margin; numpy's scores
# carry rounding of ~E ulps, so compare with a few ulps of slack on the brute force side.
SLACK = 1e-12


def projections(case, alpha=None, rslora=False):
    """Q, K: [N, L, D] in float64, LoRA merged as the gradient path does."""
    x = np.asarray(case["x"], dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    out = []
    for p in ("q", "k"):
        w = np.asarray(case["w_" + p], dtype=np.float64)
        if "lora_a_" + p in case:
            a = np.asarray(case["lora_a_" + p], dtype=np.float64)
            b = np.asarray(case["lora_b_" + p], dtype=np.float64)
            w = w + lfcase.lora_scaling(a.shape[0], alpha, rslora) * (b @ a)
        out.append(x @ w.T)
    return out


CAUSAL_CHUNK = 128  # the library's causal_chunk (cost_model.hpp), where causal heads centre


def brute_force(case, heads, scale=None, alpha=None, rslora=False, causal=False):
    """Per head: max |S_ij|, max |S_ij - beta q_i.c|, max |Q_h|, max |K_h| over the batch."""
    q, k = projections(case, alpha, rslora)
    n, L, D = q.shape
    E = D // heads
    beta = 1.0 / math.sqrt(E) if scale is None else scale
    result = []
    for h in range(heads):
        qh, kh = q[:, :, h * E:(h + 1) * E], k[:, :, h * E:(h + 1) * E]
        s = beta * np.einsum("nie,nje->nij", qh, kh)
        c = kh[:, :CAUSAL_CHUNK if causal else L].mean(axis=1, keepdims=True)  # [N, 1, E]
        centred = beta * np.einsum("nie,nje->nij", qh, kh - c)
        result.append({"raw": float(np.abs(s).max()), "centred": float(np.abs(centred).max()),
                       "gamma_q": float(np.abs(qh).max()), "gamma_k": float(np.abs(kh).max())})
    return result


def run_phase(binary, case, args=()):
    """Write the case, run `phase --json`; returns (exit code, parsed JSON or None, stderr)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "case.safetensors")
        lfcase.write_safetensors(path, case)
        rc, stdout, stderr = lfcase.run_lorafast(binary, ["phase", "--in", path, "--json"] + list(args))
    if rc != 0:
        return rc, None, stderr
    return rc, json.loads(stdout), stderr


def scaled_case(rng, N, L, D, R, gain, adapted="qv"):
    """random_case with W and B (hence Q, K, V, LoRA included) scaled by `gain`."""
    case = lfcase.random_case(rng, N, L, D, R, adapted)
    for name in list(case):
        if name.startswith("w_") or name.startswith("lora_b_"):
            case[name] = gain * case[name]
    return case


@harness.test
def json_has_the_documented_keys(binary):
    case = lfcase.random_case(np.random.default_rng(1), 1, 64, 8, 2, "qv")
    rc, out, err = run_phase(binary, case, ["--heads", "2"])
    check(rc == 0, "exit %d: %s" % (rc, err.strip()))
    check({"L", "sqrt_log_L", "heads"} <= set(out), "top-level keys %s" % sorted(out))
    check(out["L"] == 64, "L = %r" % out["L"])
    check(abs(out["sqrt_log_L"] - math.sqrt(math.log(64))) < 1e-12, "sqrt_log_L = %r" % out["sqrt_log_L"])
    check(len(out["heads"]) == 2, "%d heads" % len(out["heads"]))
    for i, head in enumerate(out["heads"]):
        check(HEAD_KEYS <= set(head), "head %d keys %s" % (i, sorted(head)))
        check(head["method"] in ("exact", "fast"), "head %d method %r" % (i, head["method"]))
        check(isinstance(head["reason"], str) and head["reason"].startswith(head["method"] + ":"),
              "head %d reason %r" % (i, head["reason"]))


SOUNDNESS_CASES = [
    # (name, N, L, D, R, adapted, heads, extra flags, dtype, gain)
    ("bidir/L37/H1/qv", None, 37, 6, 2, "qv", 1, [], np.float64, 1.0),
    ("N2/L50/H2/qkv/causal", 2, 50, 8, 3, "qkv", 2, ["--causal"], np.float64, 1.5),
    ("L300/H2/qv/causal (centred on the first chunk)", None, 300, 8, 2, "qv", 2, ["--causal"], np.float64, 1.0),
    ("N3/L17/H3/qk/alpha/f32", 3, 17, 9, 2, "qk", 3, ["--alpha", "5"], np.float32, 2.0),
    ("L29/H2/k/rslora/scale", None, 29, 10, 4, "k", 2, ["--rslora", "--alpha", "3", "--scale", "0.7"],
     np.float64, 1.0),
    ("L1/H1/qv", None, 1, 4, 2, "qv", 1, [], np.float64, 1.0),
]


def soundness_test(seed, spec):
    name, N, L, D, R, adapted, heads, flags, dtype, gain = spec

    def fn(binary):
        rng = np.random.default_rng(100 + seed)
        case = {k: v.astype(dtype) for k, v in scaled_case(rng, N, L, D, R, gain, adapted).items()}
        rc, out, err = run_phase(binary, case, ["--heads", str(heads)] + flags)
        check(rc == 0, "exit %d: %s" % (rc, err.strip()))
        alpha = float(flags[flags.index("--alpha") + 1]) if "--alpha" in flags else None
        scale = float(flags[flags.index("--scale") + 1]) if "--scale" in flags else None
        want = brute_force(case, heads, scale, alpha, "--rslora" in flags, "--causal" in flags)
        notes = []
        for h, (got, ref) in enumerate(zip(out["heads"], want)):
            check(got["score_bound"] >= ref["raw"] * (1 - SLACK),
                  "head %d: score bound %.17g < max |S_ij| %.17g" % (h, got["score_bound"], ref["raw"]))
            check(got["centred_score_bound"] >= ref["centred"] * (1 - SLACK),
                  "head %d: G %.17g < max |S_ij - beta q_i.c| %.17g" % (h, got["centred_score_bound"], ref["centred"]))
            for key in ("gamma_q", "gamma_k"):
                check(abs(got[key] - ref[key]) <= 1e-12 * max(1.0, ref[key]),
                      "head %d: %s %.17g, brute force %.17g" % (h, key, got[key], ref[key]))
            notes.append("G %.3g >= %.3g" % (got["centred_score_bound"], ref["centred"]))
        return ", ".join(notes)
    return fn


for i, spec in enumerate(SOUNDNESS_CASES):
    harness.add("score_bound_is_sound/" + spec[0], soundness_test(i, spec))


@harness.test
def score_bound_covers_raw_scores_on_zero_mean_inputs(binary):
    # INTERFACE.md states G >= max |S_ij|: score_bound is the uncentred bound.
    case = lfcase.random_case(np.random.default_rng(7), 2, 96, 8, 2, "qkv")
    rc, out, err = run_phase(binary, case, ["--heads", "2"])
    check(rc == 0, "exit %d: %s" % (rc, err.strip()))
    for h, (got, ref) in enumerate(zip(out["heads"], brute_force(case, 2))):
        check(got["score_bound"] >= ref["raw"], "head %d: G %.6g < max |S_ij| %.6g" % (h, got["score_bound"], ref["raw"]))


@harness.test
def centring_shrinks_a_common_key_offset(binary):
    rng = np.random.default_rng(8)
    case = lfcase.random_case(rng, 1, 64, 8, 2, "qv")
    # K = X W_k^T with every row of X shifted by the same vector: K gains a common offset.
    case["x"] = case["x"] + 6.0 * rng.standard_normal(8)
    rc, out, err = run_phase(binary, case)
    check(rc == 0, "exit %d: %s" % (rc, err.strip()))
    got, ref = out["heads"][0], brute_force(case, 1)[0]
    check(got["score_bound"] >= ref["raw"], "score bound below max |S_ij|")
    check(got["centred_score_bound"] >= ref["centred"], "G below the centred scores")
    check(got["centred_score_bound"] < 0.5 * got["score_bound"],
          "centring did not help: G %.3g vs raw %.3g" % (got["centred_score_bound"], got["score_bound"]))
    return "G %.3g, raw %.3g, max |S| %.3g" % (got["centred_score_bound"], got["score_bound"], ref["raw"])


@harness.test
def small_projections_at_long_L_choose_fast(binary):
    case = scaled_case(np.random.default_rng(2), 1, 4096, 8, 2, 0.1)
    rc, out, err = run_phase(binary, case, ["--eps", "1e-3"])
    check(rc == 0, "exit %d: %s" % (rc, err.strip()))
    head = out["heads"][0]
    check(head["method"] == "fast", "method %r: %s" % (head["method"], head["reason"]))
    check(head["degree"] is not None and head["degree"] % 2 == 0, "degree %r" % head["degree"])
    check(head["features"] == math.comb(8 + head["degree"], head["degree"]), "features %r" % head["features"])
    check(head["cost_fast"] < head["cost_exact"], "fast not predicted cheaper")
    check(head["error_bound"] > 0, "fast head reports error_bound %r" % head["error_bound"])
    return "G %.3g, degree %d: %s" % (head["score_bound"], head["degree"], head["reason"])


@harness.test
def scaled_up_weights_choose_exact(binary):
    case = scaled_case(np.random.default_rng(2), 1, 4096, 8, 2, 4.0)
    rc, out, err = run_phase(binary, case, ["--eps", "1e-3"])
    check(rc == 0, "exit %d: %s" % (rc, err.strip()))
    head = out["heads"][0]
    check(head["method"] == "exact", "method %r: %s" % (head["method"], head["reason"]))
    check(head["error_bound"] == 0, "exact head reports error_bound %r" % head["error_bound"])
    check("G=" in head["reason"], "reason does not cite G: %r" % head["reason"])
    return head["reason"]


@harness.test
def follows_the_calibrated_cost_model(binary):
    """phase predicts with the cost model `lorafast calibrate` saved, as grad decides
    with it: ten times the exact coefficients give ten times the predicted exact cost."""
    case = lfcase.random_case(np.random.default_rng(5), 1, 300, 8, 2, "qv")
    model = {"exact_quadratic": 2e-11, "exact_scores": 1e-9, "exact_fixed": 2e-5, "fast_state": 2e-10,
             "fast_map": 0.0, "fast_chunk": 1e-10, "fast_fixed": 1e-5, "chained_factor": 0.3, "threads": 2}
    costs = []
    with tempfile.TemporaryDirectory() as tmp:
        for factor in (1, 10):
            path = os.path.join(tmp, "cost_model_%d.json" % factor)
            scaled = dict(model, **{k: factor * model[k] for k in ("exact_quadratic", "exact_scores", "exact_fixed")})
            with open(path, "w") as f:
                json.dump(scaled, f)
            os.environ["LORAFAST_COST_MODEL"] = path
            try:
                rc, out, err = run_phase(binary, case, ["--heads", "2"])
            finally:
                del os.environ["LORAFAST_COST_MODEL"]
            check(rc == 0, "exit %d: %s" % (rc, err.strip()))
            costs.append(out["heads"][0]["cost_exact"])
    check(abs(costs[1] / costs[0] - 10) < 1e-9, "cost_exact %r with 10x exact coefficients" % costs)
    return "cost_exact %.3g s -> %.3g s" % tuple(costs)


@harness.test
def table_is_the_default(binary):
    case = lfcase.random_case(np.random.default_rng(3), None, 32, 8, 2, "qv")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "case.safetensors")
        lfcase.write_safetensors(path, case)
        rc, stdout, stderr = lfcase.run_lorafast(binary, ["phase", "--in", path, "--heads", "2"])
    check(rc == 0, "exit %d: %s" % (rc, stderr.strip()))
    for word in ("gamma_q", "gamma_k", "sqrt(log L)", "degree", "features", "method", "head 1:"):
        check(word in stdout, "table lacks %r:\n%s" % (word, stdout))


@harness.test
def impossible_fast_exits_4_naming_exact(binary):
    case = scaled_case(np.random.default_rng(4), 1, 64, 8, 2, 4.0)
    rc, out, err = run_phase(binary, case, ["--method", "fast"])
    check(rc == 4, "exit %d, want 4: %s" % (rc, err.strip()))
    check(err.startswith("lorafast: error:") and "--method exact" in err and err.count("\n") == 1,
          "stderr %r" % err)


@harness.test
def odd_degree_exits_3(binary):
    case = lfcase.random_case(np.random.default_rng(5), None, 16, 4, 2, "qv")
    rc, out, err = run_phase(binary, case, ["--method", "fast", "--degree", "3"])
    check(rc == 3, "exit %d, want 3: %s" % (rc, err.strip()))
    check(err.startswith("lorafast: error:") and "--degree" in err, "stderr %r" % err)


@harness.test
def forced_degree_reports_its_bound(binary):
    case = scaled_case(np.random.default_rng(6), 1, 256, 8, 2, 0.2)
    rc, out, err = run_phase(binary, case, ["--method", "fast", "--degree", "4"])
    check(rc == 0, "exit %d: %s" % (rc, err.strip()))
    head = out["heads"][0]
    check(head["method"] == "fast" and head["degree"] == 4 and head["features"] == 495, "head %r" % head)
    check(head["error_bound"] is not None and head["error_bound"] > 0, "error_bound %r" % head["error_bound"])
    check("not enforced" in head["reason"], "reason %r" % head["reason"])
    # A forced degree far too low for G runs anyway; its bound is infinite, JSON null.
    case = scaled_case(np.random.default_rng(6), 1, 256, 8, 2, 0.5)
    rc, out, err = run_phase(binary, case, ["--method", "fast", "--degree", "4"])
    check(rc == 0, "exit %d: %s" % (rc, err.strip()))
    head = out["heads"][0]
    check(head["method"] == "fast" and head["error_bound"] is None, "head %r" % head)

if __name__ == "__main__":
    sys.exit(harness.main())
