"""lorafast.attention's masks (window=, cu_seqlens=) against PyTorch's
scaled_dot_product_attention with the same mask as an explicit boolean attn_mask,
on awkward sizes: a window of 1, a window longer than the row, documents of length 1,
documents crossing the kernels' 128-row and 256-key tiles, odd head dims, GQA.

Tolerance model: test_attention.py's rules, unchanged by a mask (a row's softmax now
sums fewer terms):
- float64: relative Frobenius error <= 1e-10 against SDPA in float64 (same function,
  summation order only; a wrong mask moves whole rows, errors >= 1e-3).
- float32: <= 4x SDPA-float32's own error against float64 SDPA, plus 3e-7.
- bfloat16: <= 2x SDPA-bfloat16's own error against float64 SDPA on the same values.
- window 1, dQ and dK: these vanish in exact arithmetic (below), so a relative error
  of rounding noise against rounding noise says nothing; they are held to the
  rounding bound of vanishing() instead, in every precision.
"""

import pytest
import torch
import torch.nn.functional as F

import lorafast
from lorafast import _core


def rel(got, ref):
    got, ref = got.double(), ref.double()
    return float((got - ref).norm() / max(float(ref.norm()), 1e-300))


def allowed(l, causal, window, docs, n):
    """The [N, 1, L, L] boolean mask from the masks' definitions: query i sees key j."""
    i = torch.arange(l)[:, None]
    j = torch.arange(l)[None, :]
    ok = (j <= i) if causal else torch.ones(l, l, dtype=torch.bool)
    if window:
        ok = ok & (j > i - window)
    if docs:
        doc = torch.repeat_interleave(torch.arange(len(docs)), torch.tensor(docs))
        ok = ok & (doc[:, None] == doc[None, :])
    return ok.expand(n, 1, l, l)


def vanishing(args, u):
    """Window 1: a query sees its own key only, P = 1, so dS = dO.v - dO.O vanishes
    with O = v, and so do dQ = scale dS K and dK = scale dS^T Q. Rounding leaves
    |dS_i| <= (2E + 10) u |dO_i||v_i| (two length-E dot products and the exponential's
    8 ulp, the SingleKey bound of test_exact_vs_reference.cpp); summed over the
    rows and the query heads of a group (Cauchy-Schwarz): ||dQ||, ||dK|| <=
    (2E + 10) u scale group ||dO|| ||v|| max_i max(|q_i|, |k_i|)."""
    q, k, v, d_o = (x.double() for x in args)
    e, group = q.shape[-1], q.shape[1] // k.shape[1]
    biggest = max(float(q.norm(dim=-1).max()), float(k.norm(dim=-1).max()))
    return (2 * e + 10) * u * e ** -0.5 * group * float(d_o.norm()) * float(v.norm()) * biggest


def compare(case, args, u, ours, bound):
    """Each output within bound(name, got, index) (a relative rule), or, for dQ and dK
    under a window of 1, within vanishing(args, u)."""
    for index, (name, a) in enumerate(zip(("o", "d_q", "d_k", "d_v"), ours)):
        if case[6] == 1 and name in ("d_q", "d_k"):
            assert float(a.double().norm()) <= vanishing(args, u), (name, float(a.double().norm()))
        else:
            bound(name, a, index)


def cu_seqlens(docs, n, l):
    """Offsets over the flattened N * L positions, every row split into `docs`."""
    if not docs:
        return None
    starts = torch.cumsum(torch.tensor([0] + docs), 0)[:-1]
    return torch.cat([starts + r * l for r in range(n)] + [torch.tensor([n * l])]).to(torch.int32)


def run(fn, q, k, v, d_o):
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    o = fn(q, k, v)
    o.backward(d_o)
    return o.detach(), q.grad, k.grad, v.grad


# (N, H, H_kv, L, E, causal, window, document lengths of every row)
CASES = [
    (1, 1, 1, 1, 1, True, 1, []),
    (2, 3, 1, 97, 5, True, 1, []),             # window 1: a row sees itself only
    (1, 2, 2, 70, 7, True, 500, []),           # a window longer than the row
    (1, 4, 2, 700, 8, True, 300, []),          # across row blocks and key tiles
    (1, 2, 1, 513, 64, True, 129, []),
    (2, 2, 2, 400, 5, True, 0, [1, 255, 1, 143]),  # documents of length 1, across tile edges
    (1, 3, 1, 400, 72, False, 0, [127, 2, 270, 1]),  # bidirectional inside documents
    (1, 2, 1, 600, 5, True, 200, [300, 1, 299]),     # window and documents together
]
IDS = ["N%dH%dK%dL%dE%d-%s-W%d-D%s" % (*c[:5], "causal" if c[5] else "bidir", c[6], ".".join(map(str, c[7])))
       for c in CASES]


def both(case, dtype, seed):
    n, h, h_kv, l, e, causal, window, docs = case
    g = torch.Generator().manual_seed(seed)
    q, k, v, d_o = (torch.randn(n, heads, l, e, generator=g, dtype=torch.float64).to(dtype) for heads in (h, h_kv, h_kv, h))
    mask = allowed(l, causal, window, docs, n)
    ours = lambda *a: lorafast.attention(*a, causal=causal, method="auto", window=window or None,
                                         cu_seqlens=cu_seqlens(docs, n, l))
    theirs = lambda *a: F.scaled_dot_product_attention(*a, attn_mask=mask, enable_gqa=h != h_kv)
    return (q, k, v, d_o), ours, theirs


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float64_matches_sdpa_with_the_mask(case):
    args, ours, theirs = both(case, torch.float64, 1)
    ref = run(theirs, *args)

    def bound(name, a, i):
        assert rel(a, ref[i]) <= 1e-10, (name, rel(a, ref[i]))
    compare(case, args, 2.0 ** -53, run(ours, *args), bound)


@pytest.mark.parametrize("case", CASES[1:], ids=IDS[1:])
def test_float32_within_the_flash_rule(case):
    args, ours, theirs = both(case, torch.float64, 2)
    ref = run(theirs, *args)
    f32 = [x.float() for x in args]
    torch32 = run(theirs, *f32)

    def bound(name, a, i):
        assert a.dtype == torch.float32
        assert rel(a, ref[i]) <= 4 * rel(torch32[i], ref[i]) + 3e-7, (name, rel(a, ref[i]), rel(torch32[i], ref[i]))
    compare(case, f32, 2.0 ** -24, run(ours, *f32), bound)


@pytest.mark.parametrize("bf16_arithmetic", [True, False], ids=["bf16_products", "f32_fallback"])
@pytest.mark.parametrize("case", CASES[1:], ids=IDS[1:])
def test_bfloat16_within_twice_sdpas_bf16_error(case, bf16_arithmetic):
    args, ours, theirs = both(case, torch.bfloat16, 3)
    ref = run(theirs, *(x.double() for x in args))
    torch_bf16 = run(theirs, *args)
    _core.set_bf16_arithmetic(bf16_arithmetic)
    try:
        got = run(ours, *args)
    finally:
        _core.set_bf16_arithmetic(True)

    def bound(name, a, i):
        assert a.dtype == torch.bfloat16
        assert rel(a, ref[i]) <= 2 * rel(torch_bf16[i], ref[i]), (name, rel(a, ref[i]), rel(torch_bf16[i], ref[i]))
    # P = 1 is exact in bf16, so O = v and the f32 sums of dP and delta carry the f32 bound.
    compare(case, args, 2.0 ** -24, got, bound)


def test_gradcheck_through_the_masks():
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 2, 9, 3, generator=g, dtype=torch.float64).requires_grad_() for _ in range(3))
    fn = lambda *a: lorafast.attention(*a, causal=True, method="exact", window=3, cu_seqlens=torch.tensor([0, 4, 9]))
    assert torch.autograd.gradcheck(fn, (q, k, v))


def test_numpy_and_list_offsets():
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 2, 20, 4, generator=g, dtype=torch.float64) for _ in range(3))
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed(20, True, 0, [5, 15], 1))
    got = lorafast.attention(q.numpy(), k.numpy(), v.numpy(), causal=True, cu_seqlens=[0, 5, 20])
    assert rel(torch.from_numpy(got), want) <= 1e-10


def test_masks_plan_exact_and_refuse_surrogates():
    g = torch.Generator().manual_seed(6)
    q, k, v = (0.2 * torch.randn(1, 2, 512, 4, generator=g, dtype=torch.float64) for _ in range(3))
    for plan in (lorafast.attention_plan(q, k, causal=True, window=64),
                 lorafast.attention_plan(q, k, causal=True, cu_seqlens=[0, 100, 512])):
        assert all(p["method"] == "exact" and "mask" in p["reason"] for p in plan), plan
    for method in ("fast", "chained"):
        with pytest.raises(RuntimeError, match="cannot honour the sliding-window or document mask"):
            lorafast.attention(q, k, v, causal=True, window=64, method=method)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"window": 0, "causal": True}, ValueError, "window must be >= 1"),
    ({"window": 2.5, "causal": True}, TypeError, "window must be a positive integer"),
    ({"window": 4}, ValueError, "needs causal=True"),
    ({"cu_seqlens": [0.0, 8.0]}, TypeError, "cu_seqlens must be a 1-D sequence of integers"),
    ({"cu_seqlens": [[0, 8]]}, TypeError, "cu_seqlens must be a 1-D sequence of integers"),
    ({"cu_seqlens": [1, 8]}, ValueError, "cu_seqlens must start at 0"),
    ({"cu_seqlens": [0, 7]}, ValueError, "cu_seqlens must end at batch \\* seq_len = 8"),
    ({"cu_seqlens": [0, 5, 3, 8]}, ValueError, "cu_seqlens must increase"),
])
def test_bad_masks(kwargs, error, match):
    q, k, v = (torch.randn(1, 2, 8, 4) for _ in range(3))
    with pytest.raises(error, match=match):
        lorafast.attention(q, k, v, **kwargs)
