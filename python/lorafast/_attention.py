"""lorafast.attention and lorafast.attention_plan (INTERFACE.md "Python").

Tensors arrive in the layout of torch.nn.functional.scaled_dot_product_attention,
[N, H, L, E], with k and v allowed fewer heads (H % H_kv == 0). The C++ core reads
them in place, through their strides, and serves each K/V head to its group of query
heads itself; only an array whose last dimension is not contiguous (or whose strides
are negative or overlap rows) is copied first.
"""

import math
import numbers

import numpy as np

from . import _core

METHODS = ("exact", "fast", "chained", "auto")
_DTYPES = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def _is_torch(x):
    return type(x).__module__.startswith("torch")


def check_options(causal, scale, method, eps, degree, threads):
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError("causal must be True or False, got %r" % (causal,))
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


def _check_array(name, x):
    """x as a NumPy array [N, H, L, E] of float32/float64 (torch: CPU tensors)."""
    if _is_torch(x):
        import torch
        if not isinstance(x, torch.Tensor):
            raise TypeError("%s must be a tensor or an array, got %s" % (name, type(x).__name__))
        if x.device.type != "cpu":
            raise TypeError("%s is on %s: lorafast computes on the CPU; move it with .cpu()" % (name, x.device))
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError("%s must be float32 or float64, got %s" % (name, x.dtype))
        array = x.detach().numpy()
    elif isinstance(x, np.ndarray):
        array = x
    else:
        raise TypeError("%s must be a torch tensor or a numpy array, got %s" % (name, type(x).__name__))
    if array.dtype not in _DTYPES:
        raise TypeError("%s must be float32 or float64, got %s" % (name, array.dtype))
    if array.ndim != 4:
        raise ValueError("%s must have 4 dimensions [N, H, L, E], got shape %s" % (name, tuple(array.shape)))
    if 0 in array.shape:
        raise ValueError("%s has an empty dimension: shape %s" % (name, tuple(array.shape)))
    if not np.isfinite(array).all():
        raise ValueError("%s holds NaN or Inf values" % name)
    return array


def _check_inputs(q, k, v=None):
    """NumPy views of q, k(, v), checked."""
    names = ("q", "k", "v") if v is not None else ("q", "k")
    arrays = [_check_array(n, x) for n, x in zip(names, (q, k, v))]
    kinds = {_is_torch(x) for x in (q, k, v) if x is not None}
    if len(kinds) > 1:
        raise TypeError("q, k and v must all be torch tensors or all numpy arrays")
    if len({a.dtype for a in arrays}) > 1:
        raise TypeError("q, k and v must have one dtype, got %s" % ", ".join(str(a.dtype) for a in arrays))
    n, h, l, e = arrays[0].shape
    for name, a in zip(names[1:], arrays[1:]):
        if a.shape[0] != n or a.shape[2] != l or a.shape[3] != e:
            raise ValueError("%s must have shape [N, H_kv, L, E] = [%d, H_kv, %d, %d] like q, got %s"
                             % (name, n, l, e, tuple(a.shape)))
    h_kv = arrays[1].shape[1]
    if v is not None and arrays[2].shape[1] != h_kv:
        raise ValueError("k and v must have the same number of heads, got %d and %d" % (h_kv, arrays[2].shape[1]))
    if h % h_kv:
        raise ValueError("the query heads (%d) must be a multiple of the key/value heads (%d)" % (h, h_kv))
    return arrays


def _to_core(x):
    """x itself when the core can read it in place, else a C-contiguous copy."""
    itemsize = x.itemsize
    n, h, l, e = x.shape
    strides = [st // itemsize if st % itemsize == 0 else -1 for st in x.strides]
    readable = ((e == 1 or strides[3] == 1) and (l == 1 or strides[2] >= e)
                and all(st >= 0 for size, st in zip(x.shape, strides) if size > 1))
    return x if readable else np.ascontiguousarray(x)


def _scale(scale):
    return 0.0 if scale is None else float(scale)


def _threads(threads):
    return 0 if threads is None else int(threads)


def _core_fn(kind, dtype):
    return getattr(_core, "%s_%s" % (kind, _DTYPES[dtype]))


def attention_plan(q, k, causal=False, scale=None, method="auto", eps=1e-3, degree=None, threads=None):
    """One dict per query head: how lorafast.attention would compute it and why."""
    check_options(causal, scale, method, eps, degree, threads)
    qa, ka = _check_inputs(q, k)
    heads = _core_fn("plan", qa.dtype)(_to_core(qa), _to_core(ka), bool(causal), _scale(scale), method,
                                       float(eps), degree, _threads(threads))
    return [_decision(d) for d in heads]


def _decision(d):
    return {"method": d.method, "degree": d.degree, "features": d.features, "score_bound": d.score_bound,
            "error_bound": d.error_bound, "gradient_bound": d.gradient_bound, "reason": d.reason}


class Forward:
    """What attention_forward computed, for attention_backward."""

    def __init__(self, arrays, o, lse, plan, options):
        self.arrays, self.o, self.lse, self.plan, self.options = arrays, o, lse, plan, options

    @property
    def output(self):
        """o, [N, H, L, E]."""
        return self.o

    def decisions(self):
        return [_decision(d) for d in self.plan]


def attention_forward(q, k, v, causal=False, scale=None, method="auto", eps=1e-3, degree=None, threads=None):
    """NumPy (or torch, without autograd) forward: a Forward whose .output is o [N, H, L, E]."""
    check_options(causal, scale, method, eps, degree, threads)
    qa, ka, va = _check_inputs(q, k, v)
    arrays = (_to_core(qa), _to_core(ka), _to_core(va))
    o, lse, plan = _core_fn("forward", qa.dtype)(*arrays, bool(causal), _scale(scale), method, float(eps), degree,
                                                 _threads(threads))
    return Forward(arrays, o, lse, plan, (bool(causal), _scale(scale), _threads(threads)))


def attention_backward(forward, grad_output):
    """(d_q, d_k, d_v) as NumPy arrays [N, H(_kv), L, E], for a Forward and dL/do [N, H, L, E]."""
    if not isinstance(forward, Forward):
        raise TypeError("forward must be what attention_forward returned, got %s" % type(forward).__name__)
    go = _check_array("grad_output", grad_output)
    if go.shape != forward.output.shape or go.dtype != forward.o.dtype:
        raise ValueError("grad_output must have the shape %s and dtype %s of the output, got %s %s"
                         % (tuple(forward.output.shape), forward.o.dtype, tuple(go.shape), go.dtype))
    causal, scale, threads = forward.options
    return _core_fn("backward", forward.o.dtype)(*forward.arrays, forward.o, forward.lse, _to_core(go), causal, scale,
                                                 forward.plan, threads)


def attention(q, k, v, causal=False, scale=None, method="auto", eps=1e-3, degree=None, threads=None):
    """Multi-head attention like torch.nn.functional.scaled_dot_product_attention.

    q: [N, H, L, E]; k, v: [N, H_kv, L, E] with H % H_kv == 0; float32 or float64.
    Torch tensors give a differentiable torch tensor (the backward runs lorafast's,
    with the forward's plan); numpy arrays give a numpy array.
    method: "exact", "fast" or "chained" (the certified polynomial surrogate, error
    held to eps, or a forced even degree), or "auto" (per head, the fastest method
    that meets eps)."""
    if any(_is_torch(x) for x in (q, k, v)):
        from ._torch import attention as torch_attention
        return torch_attention(q, k, v, causal, scale, method, eps, degree, threads)
    return attention_forward(q, k, v, causal, scale, method, eps, degree, threads).output
