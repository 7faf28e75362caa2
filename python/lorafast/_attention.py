"""lorafast.attention and lorafast.attention_plan (INTERFACE.md "Python").

Tensors arrive in the layout of torch.nn.functional.scaled_dot_product_attention,
[N, H, L, E], with k and v allowed fewer heads (H % H_kv == 0). Here the options are
checked and torch tensors viewed as NumPy arrays; the C++ core (python/src/module.cpp)
checks the arrays and the masks (window, cu_seqlens: AttentionParams), reads them in place through their strides (an array whose last
dimension is not contiguous is copied first) and serves each K/V head to its group
of query heads itself.
"""

import math
import numbers

import numpy as np

from . import _core

METHODS = ("exact", "fast", "chained", "auto")


def _is_torch(x):
    return type(x).__module__.startswith("torch")


def check_options(causal, scale, method, eps, degree, threads, window=None):
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError("causal must be True or False, got %r" % (causal,))
    if window is not None:
        if not isinstance(window, numbers.Integral) or isinstance(window, bool):
            raise TypeError("window must be a positive integer or None, got %r" % (window,))
        if window < 1:
            raise ValueError("window must be >= 1 (None: no window), got %r" % (window,))
        if not causal:
            raise ValueError("window is a causal sliding window: it needs causal=True")
    if scale is not None:
        if not isinstance(scale, numbers.Real) or isinstance(scale, bool):
            raise TypeError("scale must be a number or None, got %r" % (scale,))
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError("scale must be positive and finite, got %r" % (scale,))
    if method not in METHODS:
        raise ValueError("method must be one of %s, got %r" % (", ".join(METHODS), method))
    if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not (math.isfinite(eps) and eps > 0):
        raise ValueError("eps must be a positive number, and finite, got %r" % (eps,))
    if degree is not None:
        if not isinstance(degree, numbers.Integral) or isinstance(degree, bool):
            raise TypeError("degree must be an even integer or None, got %r" % (degree,))
        if degree < 0 or degree % 2:
            raise ValueError("degree must be even and >= 0 (odd Taylor degrees can make the softmax "
                             "normaliser negative), got %r" % (degree,))
    if threads is not None:
        if not isinstance(threads, numbers.Integral) or isinstance(threads, bool) or threads < 1:
            raise ValueError("threads must be a positive integer or None, got %r" % (threads,))


def _as_array(name, x):
    """x's memory as a NumPy array (torch: a CPU float32/float64 tensor); the core checks the rest."""
    if isinstance(x, np.ndarray):
        return x
    if _is_torch(x):
        import torch
        if isinstance(x, torch.Tensor):
            if x.device.type != "cpu":
                raise TypeError("%s is on %s: lorafast computes on the CPU; move it with .cpu()" % (name, x.device))
            if x.dtype not in (torch.float32, torch.float64):
                raise TypeError("%s must be float32 or float64, got %s" % (name, x.dtype))
            return x.detach().numpy()
        raise TypeError("%s must be a tensor or an array, got %s" % (name, type(x).__name__))
    raise TypeError("%s must be a torch tensor or a numpy array, got %s" % (name, type(x).__name__))


def _as_arrays(q, k, v=None):
    if len({_is_torch(x) for x in (q, k, v) if x is not None}) > 1:
        raise TypeError("q, k and v must all be torch tensors or all numpy arrays")
    arrays = [_as_array("q", q), _as_array("k", k)]
    if v is not None:
        arrays.append(_as_array("v", v))
    return arrays


def _scale(scale):
    return 0.0 if scale is None else float(scale)


def _window(window):
    return 0 if window is None else int(window)


def _cu_seqlens(cu_seqlens):
    """The document offsets as a list of ints ([] for none); the core checks their values."""
    if cu_seqlens is None:
        return []
    if _is_torch(cu_seqlens):
        cu_seqlens = cu_seqlens.detach().cpu().numpy()
    a = np.asarray(cu_seqlens)
    if a.ndim != 1 or not (np.issubdtype(a.dtype, np.integer) or a.size == 0):
        raise TypeError("cu_seqlens must be a 1-D sequence of integers (document offsets), got %s of shape %s"
                        % (a.dtype, a.shape))
    return [int(x) for x in a]


def _threads(threads):
    return 0 if threads is None else int(threads)


def attention_plan(q, k, causal=False, scale=None, method="auto", eps=1e-3, degree=None, threads=None, window=None,
                   cu_seqlens=None):
    """One dict per query head: how lorafast.attention would compute it and why."""
    check_options(causal, scale, method, eps, degree, threads, window)
    plan = _core.plan(*_as_arrays(q, k), bool(causal), _scale(scale), _window(window), _cu_seqlens(cu_seqlens), method,
                      float(eps), degree, _threads(threads))
    return [_decision(d) for d in plan.heads]


def _decision(d):
    return {"method": d.method, "degree": d.degree, "features": d.features, "score_bound": d.score_bound,
            "error_bound": d.error_bound, "gradient_bound": d.gradient_bound, "reason": d.reason}


class Forward:
    """What attention_forward computed, for attention_backward."""

    def __init__(self, arrays, o, lse, plan, options, request, bf16_products=False):
        self.arrays, self.o, self.lse, self.plan, self.options, self.request = arrays, o, lse, plan, options, request
        self.bf16_products = bf16_products

    @property
    def output(self):
        """o, [N, H, L, E]."""
        return self.o

    def decisions(self):
        """attention_plan's dicts for the plan this forward ran (an exact forward
        skipped measuring the scores: they are measured now)."""
        plan = self.plan
        if not plan.measured:
            *options, threads = self.options
            plan = _core.plan(self.arrays[0], self.arrays[1], *options, *self.request, threads)
        return [_decision(d) for d in plan.heads]


def attention_forward(q, k, v, causal=False, scale=None, method="auto", eps=1e-3, degree=None, threads=None,
                      bf16_products=False, window=None, cu_seqlens=None):
    """NumPy (or torch, without autograd) forward: a Forward whose .output is o [N, H, L, E].
    bf16_products (float32 inputs): the exact heads multiply in bf16, summing in f32."""
    check_options(causal, scale, method, eps, degree, threads, window)
    arrays = _as_arrays(q, k, v)
    # (causal, scale, window, cu_seqlens, threads): what the backward and decisions() repeat.
    options = (bool(causal), _scale(scale), _window(window), _cu_seqlens(cu_seqlens), _threads(threads))
    request = (method, float(eps), degree)
    o, lse, plan = _core.forward(*arrays, *options[:4], *request, options[4], bool(bf16_products))
    return Forward(arrays, o, lse, plan, options, request, bool(bf16_products))


def attention_backward(forward, grad_output):
    """(d_q, d_k, d_v) as NumPy arrays [N, H(_kv), L, E], for a Forward and dL/do [N, H, L, E]."""
    if not isinstance(forward, Forward):
        raise TypeError("forward must be what attention_forward returned, got %s" % type(forward).__name__)
    *options, threads = forward.options
    return _core.backward(*forward.arrays, forward.o, forward.lse, _as_array("grad_output", grad_output), *options,
                          forward.plan, threads, forward.bf16_products)


def attention(q, k, v, causal=False, scale=None, method="auto", eps=1e-3, degree=None, threads=None, window=None,
              cu_seqlens=None):
    """Multi-head attention like torch.nn.functional.scaled_dot_product_attention.

    q: [N, H, L, E]; k, v: [N, H_kv, L, E] with H % H_kv == 0; float32 or float64,
    or (torch) bfloat16: then o and the gradients are bfloat16, computed in f32 with
    the exact heads' matrix products in bf16 (PyTorch's bf16 SDPA rounds the same
    operands) where the CPU has bf16 arithmetic.
    Torch tensors give a differentiable torch tensor (the backward runs lorafast's,
    with the forward's plan); numpy arrays give a numpy array.
    method: "exact", "fast" or "chained" (the certified polynomial surrogate, error
    held to eps, or a forced even degree), or "auto" (per head, the fastest method
    that meets eps).
    window (with causal=True): a sliding window, query i sees keys j with
    i - window < j <= i (transformers' sliding_window).
    cu_seqlens: documents packed in the rows, attention never crossing one: int
    offsets [D + 1] into the N * L positions (FlashAttention's cu_seqlens; for N = 1,
    the starts of the row's documents and then L), 0 = c_0 < ... < c_D = N * L with
    every row start n * L among them; causal or not inside a document.
    With either mask every head runs exactly (the surrogates cannot honour one;
    method "fast" or "chained" raises RuntimeError)."""
    if any(_is_torch(x) for x in (q, k, v)):
        from ._torch import attention as torch_attention
        return torch_attention(q, k, v, causal, scale, method, eps, degree, threads, window, cu_seqlens)
    return attention_forward(q, k, v, causal, scale, method, eps, degree, threads, window=window,
                             cu_seqlens=cu_seqlens).output
