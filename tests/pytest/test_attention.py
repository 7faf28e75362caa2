"""lorafast.attention against PyTorch 2.13's scaled_dot_product_attention, torch
autograd's gradcheck, and every bad argument (INTERFACE.md "Python").

Tolerance model (DESIGN.md rule 5):
- float64, exact: relative Frobenius error of o and of each gradient <= 1e-10 against
  SDPA in float64. Both are the same function in IEEE double, differing in summation
  order (tiles, online softmax): errors of order L * 1e-16, far below 1e-10; a wrong
  mask, scale or head mapping is >= 1e-3.
- float32, exact: against float64 SDPA, our error <= 4x SDPA-float32's own error on
  the same inputs plus 3e-7 (a few float32 ulps, for when SDPA's is tiny by luck):
  FlashAttention's rule for tiled kernels.
- bfloat16 (INTERFACE.md "Precision"): against float64 SDPA on the same bf16 values,
  our error <= 2x SDPA-bfloat16's own error on the same inputs (the issue's rule for
  every bf16 path), with the bf16 products and with their f32 fallback forced.
- gradcheck (float64, finite differences, torch's default atol 1e-5 / rtol 1e-3):
  exact against attention itself; fast and chained at a forced degree against their
  own surrogate, which is what their forward computes, so the backward must be its
  exact gradient.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lorafast
from lorafast import _core


def rel(got, ref):
    got, ref = torch.as_tensor(got, dtype=torch.float64), torch.as_tensor(ref, dtype=torch.float64)
    return float((got - ref).norm() / max(float(ref.norm()), 1e-300))


def inputs(n, h, h_kv, l, e, dtype, seed=0, gain=1.0):
    g = torch.Generator().manual_seed(seed)
    make = lambda heads: (gain * torch.randn(n, heads, l, e, generator=g, dtype=torch.float64)).to(dtype)
    return make(h), make(h_kv), make(h_kv)


def sdpa(q, k, v, causal, scale=None):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale, enable_gqa=q.shape[1] != k.shape[1])


def forward_and_grads(fn, q, k, v, d_o):
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    o = fn(q, k, v)
    o.backward(d_o)
    return o.detach(), q.grad, k.grad, v.grad


# (N, H, H_kv, L, E): the awkward sizes of DESIGN.md rule 7, GQA among them.
SIZES = [(1, 1, 1, 1, 1), (1, 3, 3, 7, 5), (2, 2, 1, 97, 64), (1, 3, 1, 128, 72), (1, 4, 2, 130, 8),
         (1, 1, 1, 1025, 5)]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "N%dH%dHkv%dL%dE%d" % s)
def test_exact_float64_matches_sdpa(size, causal):
    n, h, h_kv, l, e = size
    q, k, v = inputs(n, h, h_kv, l, e, torch.float64, seed=l)
    d_o = torch.randn(n, h, l, e, dtype=torch.float64)
    ours = forward_and_grads(lambda *a: lorafast.attention(*a, causal=causal, method="exact"), q, k, v, d_o)
    ref = forward_and_grads(lambda *a: sdpa(*a, causal), q, k, v, d_o)
    for name, a, b in zip(("o", "d_q", "d_k", "d_v"), ours, ref):
        assert rel(a, b) <= 1e-10, (name, rel(a, b))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("size", SIZES[1:], ids=lambda s: "N%dH%dHkv%dL%dE%d" % s)
def test_exact_float32_within_the_flash_rule(size, causal):
    n, h, h_kv, l, e = size
    q, k, v = inputs(n, h, h_kv, l, e, torch.float64, seed=l + 1)
    d_o = torch.randn(n, h, l, e, dtype=torch.float64)
    ref = forward_and_grads(lambda *a: sdpa(*a, causal), q, k, v, d_o)
    f32 = [x.float() for x in (q, k, v, d_o)]
    ours = forward_and_grads(lambda *a: lorafast.attention(*a, causal=causal, method="exact"), *f32)
    torch32 = forward_and_grads(lambda *a: sdpa(*a, causal), *f32)
    for name, a, t, r in zip(("o", "d_q", "d_k", "d_v"), ours, torch32, ref):
        assert a.dtype == torch.float32
        assert rel(a, r) <= 4 * rel(t, r) + 3e-7, (name, rel(a, r), rel(t, r))


@pytest.mark.parametrize("bf16_arithmetic", [True, False], ids=["bf16_products", "f32_fallback"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("size", SIZES[1:], ids=lambda s: "N%dH%dHkv%dL%dE%d" % s)
def test_exact_bfloat16_within_twice_sdpas_bf16_error(size, causal, bf16_arithmetic):
    n, h, h_kv, l, e = size
    q, k, v = inputs(n, h, h_kv, l, e, torch.bfloat16, seed=l + 2)
    d_o = torch.randn(n, h, l, e, dtype=torch.float64).to(torch.bfloat16)
    ref = forward_and_grads(lambda *a: sdpa(*a, causal), *(x.double() for x in (q, k, v, d_o)))
    torch_bf16 = forward_and_grads(lambda *a: sdpa(*a, causal), q, k, v, d_o)
    _core.set_bf16_arithmetic(bf16_arithmetic)
    try:
        ours = forward_and_grads(lambda *a: lorafast.attention(*a, causal=causal, method="exact"), q, k, v, d_o)
    finally:
        _core.set_bf16_arithmetic(True)
    for name, a, t, r in zip(("o", "d_q", "d_k", "d_v"), ours, torch_bf16, ref):
        assert a.dtype == torch.bfloat16
        assert rel(a, r) <= 2 * rel(t, r), (name, rel(a, r), rel(t, r))


def test_bfloat16_needs_one_dtype():
    q, k, v = inputs(1, 2, 2, 8, 4, torch.bfloat16)
    with pytest.raises(TypeError, match="k must be bfloat16 like q"):
        lorafast.attention(q, k.float(), v)


def test_scale_and_strided_inputs():
    q, k, v = inputs(2, 2, 2, 33, 8, torch.float64, seed=3)
    # Views with any strides: a transposed [N, L, H, E] buffer, as a fused projection gives.
    qs, ks, vs = (x.transpose(1, 2).contiguous().transpose(1, 2) for x in (q, k, v))
    assert not qs.is_contiguous()
    got = lorafast.attention(qs, ks, vs, scale=0.3, method="exact")
    assert rel(got, sdpa(q, k, v, False, scale=0.3)) <= 1e-10


@pytest.mark.parametrize("causal", [False, True])
def test_fused_projection_views_with_gqa(causal):
    # q, k, v as a Llama layer makes them: column blocks of one projection [N, L, (H + 2 H_kv) E],
    # viewed as [N, H, L, E]. The core reads these views in place (no copy) and serves
    # each K/V head to its group.
    n, h, h_kv, l, e = 2, 6, 2, 131, 8
    qkv = torch.randn(n, l, (h + 2 * h_kv) * e, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    views = [t.view(n, l, -1, e).transpose(1, 2) for t in qkv.split([h * e, h_kv * e, h_kv * e], dim=-1)]
    for view in views:
        assert not view.is_contiguous()
        array = view.detach().numpy()
        assert lorafast._core.reads_in_place(array)  # no copy
    d_o = torch.randn(n, h, l, e, dtype=torch.float64)
    ours = forward_and_grads(lambda *a: lorafast.attention(*a, causal=causal, method="exact"), *views, d_o)
    ref = forward_and_grads(lambda *a: sdpa(*a, causal), *views, d_o)
    for name, a, b in zip(("o", "d_q", "d_k", "d_v"), ours, ref):
        assert rel(a, b) <= 1e-10, (name, rel(a, b))


def test_gradcheck_exact():
    q, k, v = (x.requires_grad_() for x in inputs(1, 2, 1, 6, 3, torch.float64, seed=4))
    for causal in (False, True):
        assert torch.autograd.gradcheck(lambda *a: lorafast.attention(*a, causal=causal, method="exact"), (q, k, v))


@pytest.mark.parametrize("method", ["fast", "chained"])
@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_surrogate(method, causal):
    # Small scores (gain 0.3) keep the degree-4 surrogate's normaliser far from zero.
    q, k, v = (x.requires_grad_() for x in inputs(1, 2, 2, 7, 3, torch.float64, seed=5, gain=0.3))
    fn = lambda *a: lorafast.attention(*a, causal=causal, method=method, degree=4)
    assert torch.autograd.gradcheck(fn, (q, k, v))


def test_auto_follows_the_plan_and_fast_certifies_eps():
    q, k, v = inputs(1, 2, 2, 512, 4, torch.float64, seed=6, gain=0.2)
    plan = lorafast.attention_plan(q, k, method="fast", eps=1e-3)
    assert [set(p) for p in plan] == [{"method", "degree", "features", "score_bound", "error_bound",
                                       "gradient_bound", "reason"}] * 2
    assert all(p["method"] == "fast" and p["degree"] >= 0 and p["gradient_bound"] <= 1e-3 for p in plan)
    d_o = torch.randn(1, 2, 512, 4, dtype=torch.float64)
    ours = forward_and_grads(lambda *a: lorafast.attention(*a, method="fast", eps=1e-3), q, k, v, d_o)
    ref = forward_and_grads(lambda *a: sdpa(*a, False), q, k, v, d_o)
    # The certificate bounds each head's gradient error relative to its own size by eps.
    for name, a, b in zip(("o", "d_q", "d_k", "d_v"), ours, ref):
        assert rel(a, b) <= 1e-3, (name, rel(a, b))
    auto = lorafast.attention_plan(q, k)
    assert all(p["method"] in ("exact", "fast", "chained") and p["reason"] for p in auto)


def test_numpy_forward_and_backward():
    q, k, v = inputs(1, 4, 2, 20, 6, torch.float64, seed=7)
    d_o = torch.randn(1, 4, 20, 6, dtype=torch.float64)
    ref = forward_and_grads(lambda *a: sdpa(*a, True), q, k, v, d_o)
    qn, kn, vn = (x.numpy() for x in (q, k, v))
    o = lorafast.attention(qn, kn, vn, causal=True, method="exact")
    assert isinstance(o, np.ndarray) and o.shape == (1, 4, 20, 6)
    assert rel(o, ref[0]) <= 1e-10
    fwd = lorafast.attention_forward(qn, kn, vn, causal=True, method="exact")
    grads = lorafast.attention_backward(fwd, d_o.numpy())
    for name, a, b in zip(("d_q", "d_k", "d_v"), grads, ref[1:]):
        assert isinstance(a, np.ndarray) and a.shape == b.shape, name
        assert rel(a, b) <= 1e-10, (name, rel(a, b))


def good():
    return inputs(1, 2, 1, 4, 3, torch.float32)


BAD = [
    ("rank", lambda q, k, v: (q[0], k, v), {}, ValueError, "q must have 4 dimensions"),
    ("seq_len", lambda q, k, v: (q, k[:, :, :3], v), {}, ValueError, "k must have shape"),
    ("head_dim", lambda q, k, v: (q, k, v[..., :2]), {}, ValueError, "v must have shape"),
    ("kv heads", lambda q, k, v: (q, k, torch.cat([v, v], 1)), {}, ValueError, "same number of heads"),
    ("groups", lambda q, k, v: (torch.cat([q, q[:, :1]], 1), torch.cat([k, k], 1), torch.cat([v, v], 1)), {},
     ValueError, "multiple of the key/value heads"),
    ("int", lambda q, k, v: (q.int(), k, v), {}, TypeError, "q must be float32 or float64"),
    ("half", lambda q, k, v: (q, k.half(), v), {}, TypeError, "k must be float32 or float64"),
    ("bfloat16", lambda q, k, v: (q, k, v.bfloat16()), {}, TypeError, "v must be float32 or float64"),
    ("mixed", lambda q, k, v: (q.double(), k, v), {}, TypeError, "one dtype"),
    ("nan", lambda q, k, v: (q, k.index_fill(2, torch.tensor([1]), float("nan")), v), {}, ValueError, "k holds NaN"),
    ("inf", lambda q, k, v: (q.index_fill(3, torch.tensor([0]), float("inf")), k, v), {}, ValueError, "q holds"),
    ("empty", lambda q, k, v: (q[:, :, :0], k[:, :, :0], v[:, :, :0]), {}, ValueError, "empty dimension"),
    ("device", lambda q, k, v: (q.to("meta"), k, v), {}, TypeError, "q is on meta"),
    ("mixed kinds", lambda q, k, v: (q, k.numpy(), v), {}, TypeError, "must all be torch tensors or all numpy"),
    ("list", lambda q, k, v: (q.tolist(), k, v), {}, TypeError, r"all numpy arrays \(q is list\)"),
    ("method", None, {"method": "flash"}, ValueError, "method must be one of"),
    ("eps", None, {"eps": -1.0}, ValueError, "eps must be"),
    ("degree odd", None, {"degree": 3}, ValueError, "degree must be even"),
    ("degree type", None, {"degree": 2.0}, TypeError, "degree must be an even integer"),
    ("scale", None, {"scale": float("nan")}, ValueError, "scale must be positive"),
    ("causal", None, {"causal": "yes"}, TypeError, "causal must be True or False"),
    ("threads", None, {"threads": 0}, ValueError, "threads must be a positive integer"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_arguments_raise_naming_the_argument(case):
    _, change, kwargs, error, needle = case
    args = change(*good()) if change else good()
    with pytest.raises(error, match=needle):
        lorafast.attention(*args, **kwargs)


def test_fast_that_cannot_certify_says_so():
    q, k, v = inputs(1, 1, 1, 64, 8, torch.float64, seed=8, gain=4.0)  # large scores: no degree certifies
    with pytest.raises(RuntimeError, match="`method` fast cannot certify `eps` 1e-06.*; `method` exact can") as err:
        lorafast.attention(q, k, v, method="fast", eps=1e-6)
    assert "--" not in str(err.value), "library messages name arguments, not command-line flags"


def test_numpy_arrays_of_any_strides():
    # A non-contiguous last dimension and negative strides: the core copies these
    # (reads_in_place is False) and must give what the contiguous arrays give.
    q, k, v = (x.numpy() for x in inputs(1, 2, 2, 19, 4, torch.float64, seed=11))
    wide = [np.repeat(x, 2, axis=3)[..., ::2] for x in (q, k, v)]
    flipped = [np.ascontiguousarray(x[:, :, ::-1])[:, :, ::-1] for x in (q, k, v)]
    for arrays in (wide, flipped):
        assert not any(lorafast._core.reads_in_place(a) for a in arrays)
        assert rel(lorafast.attention(*arrays, method="exact"), lorafast.attention(q, k, v, method="exact")) == 0


def test_non_finite_values_found_through_strides():
    # NaN in a view whose rows are not contiguous with each other (the row-by-row scan).
    q, k, v = inputs(1, 2, 2, 9, 4, torch.float32, seed=12)
    d_o = torch.randn(1, 9, 2, 4).transpose(1, 2)
    fwd = lorafast.attention_forward(q, k, v)
    d_o[0, 1, 8, 3] = float("inf")
    with pytest.raises(ValueError, match="grad_output holds NaN or Inf"):
        lorafast.attention_backward(fwd, d_o)
    v_view = torch.randn(1, 9, 2, 4).transpose(1, 2)
    v_view[0, 0, 5, 0] = float("nan")
    with pytest.raises(ValueError, match="v holds NaN or Inf"):
        lorafast.attention(q, k, v_view)


@pytest.mark.parametrize("change, error, needle", [
    (lambda a: a.astype(np.int32), TypeError, "q must be float32 or float64, got int32"),
    (lambda a: a[0], ValueError, r"q must have 4 dimensions \[N, H, L, E\], got shape \(2, 4, 3\)"),
    (lambda a: a[:, :, :0], ValueError, "q has an empty dimension"),
])
def test_bad_numpy_arrays(change, error, needle):
    q, k, v = (x.numpy() for x in good())
    with pytest.raises(error, match=needle):
        lorafast.attention(change(q), k, v)


def test_exact_forward_reports_the_measured_plan():
    # An exact forward runs without measuring the scores; asked for its decisions it
    # measures them: attention_plan's for method exact, score bounds included.
    q, k, v = inputs(1, 3, 1, 40, 8, torch.float64, seed=13)
    fwd = lorafast.attention_forward(q, k, v, causal=True, method="exact")
    assert not fwd.plan.measured
    got, want = fwd.decisions(), lorafast.attention_plan(q, k, causal=True, method="exact")
    assert got == want and all(d["method"] == "exact" and d["score_bound"] > 0 for d in got)
    assert lorafast.attention_forward(q, k, v, causal=True, method="auto").plan.measured
