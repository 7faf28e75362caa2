"""lorafast.attention on torch tensors: a torch.autograd.Function whose backward is
lorafast's, run with the plan (per-head method and degree) its forward chose.
bfloat16 tensors are widened to float32 for the C++ core, which then multiplies in
bf16 (bf16_products); the output and the gradients are rounded back to bfloat16."""

import torch

from . import _attention


class _Attention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, scale, method, eps, degree, threads, window, cu_seqlens):
        bf16 = q.dtype == torch.bfloat16
        if bf16:
            q, k, v = q.float(), k.float(), v.float()
        forward = _attention.attention_forward(q, k, v, causal, scale, method, eps, degree, threads, bf16, window,
                                               cu_seqlens)
        ctx.lorafast_forward = forward
        o = torch.from_numpy(forward.output)
        return o.to(torch.bfloat16) if bf16 else o

    @staticmethod
    def backward(ctx, grad_output):
        forward = ctx.lorafast_forward
        if forward.bf16_products:
            grad_output = grad_output.float()
        grads = [torch.from_numpy(g) for g in _attention.attention_backward(forward, grad_output)]
        if forward.bf16_products:
            grads = [g.to(torch.bfloat16) for g in grads]
        return (*grads, None, None, None, None, None, None, None, None)


def attention(q, k, v, causal, scale, method, eps, degree, threads, window, cu_seqlens):
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError("q, k and v must all be torch tensors or all numpy arrays (%s is %s)"
                            % (name, type(x).__name__))
    for name, x in (("k", k), ("v", v)):
        if q.dtype == torch.bfloat16 and x.dtype != torch.bfloat16:
            raise TypeError("%s must be bfloat16 like q, got %s" % (name, x.dtype))
        if q.dtype != torch.bfloat16 and x.dtype == torch.bfloat16:
            raise TypeError("%s must be float32 or float64 like q, or q, k and v all bfloat16, got %s" % (name, x.dtype))
    return _Attention.apply(q, k, v, causal, scale, method, eps, degree, threads, window, cu_seqlens)
