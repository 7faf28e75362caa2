"""lorafast.transformers.enable(model): a Hugging Face transformers model, or a PEFT
model wrapping one, computes its self-attention with lorafast.attention.

It registers "lorafast" in transformers' attention-function registry (with SDPA's
mask function, so a causal batch without padding reaches the attention with no
mask) and switches the model to it. What lorafast does not compute is handed to
transformers' SDPA function unchanged: an explicit mask (padding), dropout, a query
length different from the key length (cached decoding), non-CPU or half tensors.
"""

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ._attention import attention, check_options

NAME = "lorafast"
_DEFAULT_OPTIONS = {"method": "auto", "eps": 1e-3}


def lorafast_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                               is_causal=None, **kwargs):
    """transformers' attention-function signature: q [N, H, L, E], k, v [N, H_kv, L, E]
    -> ([N, L, H, E], None)."""
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    computable = (attention_mask is None and dropout == 0.0 and query.shape[2] == key.shape[2]
                  and query.device.type == "cpu" and query.dtype in (torch.float32, torch.float64)
                  and key.dtype == query.dtype and value.dtype == query.dtype
                  and kwargs.get("position_bias") is None and kwargs.get("softcap") is None
                  and not kwargs.get("output_attentions", False))
    if not computable:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    options = getattr(module, "_lorafast_options", _DEFAULT_OPTIONS)
    o = attention(query, key, value, causal=bool(is_causal) and query.shape[2] > 1, scale=scaling,
                  method=options["method"], eps=options["eps"])
    return o.transpose(1, 2).contiguous(), None


def _register():
    AttentionInterface.register(NAME, lorafast_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def enable(model, method="auto", eps=1e-3):
    """Routes the attention of `model` (transformers PreTrainedModel, or a PEFT model
    wrapping one) through lorafast.attention; returns the model."""
    check_options(causal=False, scale=None, method=method, eps=eps, degree=None, threads=None)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not hasattr(base, "set_attn_implementation"):
        raise TypeError("model must be a transformers PreTrainedModel or a PEFT model wrapping one, got %s"
                        % type(model).__name__)
    _register()
    base.set_attn_implementation(NAME)
    for module in base.modules():
        module._lorafast_options = {"method": method, "eps": float(eps)}
    return model
