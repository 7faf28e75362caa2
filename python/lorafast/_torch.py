"""lorafast.attention on torch tensors: a torch.autograd.Function whose backward is
lorafast's, run with the plan (per-head method and degree) its forward chose."""

import torch

from . import _attention


class _Attention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, scale, method, eps, degree, threads):
        forward = _attention.attention_forward(q, k, v, causal, scale, method, eps, degree, threads)
        ctx.lorafast_forward = forward
        return torch.from_numpy(forward.output)

    @staticmethod
    def backward(ctx, grad_output):
        d_q, d_k, d_v = _attention.attention_backward(ctx.lorafast_forward, grad_output)
        return torch.from_numpy(d_q), torch.from_numpy(d_k), torch.from_numpy(d_v), None, None, None, None, None, None


def attention(q, k, v, causal, scale, method, eps, degree, threads):
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError("q, k and v must all be torch tensors or all numpy arrays (%s is %s)"
                            % (name, type(x).__name__))
    return _Attention.apply(q, k, v, causal, scale, method, eps, degree, threads)
