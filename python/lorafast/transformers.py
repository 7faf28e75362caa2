"""lorafast.transformers.enable(model): a Hugging Face transformers model, or a PEFT
model wrapping one, computes its self-attention with lorafast.attention.

It registers "lorafast" in transformers' attention-function registry (with SDPA's
mask function, so a causal batch without padding reaches the attention with no
mask) and switches the model to it. A sliding-window layer's causal mask is not
materialised either when there is no padding and queries and keys are the same
positions: lorafast.attention applies the window (the `sliding_window` transformers
passes to the attention function). What lorafast does not compute is handed to
transformers' SDPA function: an explicit mask (padding), dropout, a query length
different from the key length (cached decoding), non-CPU or half tensors; a window
left out of the mask is then given to SDPA as an explicit mask.
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
    window = kwargs.get("sliding_window") if attention_mask is None else None  # None: the mask holds any window
    computable = (attention_mask is None and dropout == 0.0 and query.shape[2] == key.shape[2]
                  and query.device.type == "cpu" and query.dtype in (torch.float32, torch.float64)
                  and key.dtype == query.dtype and value.dtype == query.dtype
                  and kwargs.get("position_bias") is None and kwargs.get("softcap") is None
                  and not kwargs.get("output_attentions", False))
    if not computable:
        if window is not None and query.shape[2] == key.shape[2]:  # the window _mask left out
            i = torch.arange(query.shape[2], device=query.device)
            attention_mask = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - window)
            is_causal = False
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    options = getattr(module, "_lorafast_options", _DEFAULT_OPTIONS)
    causal = bool(is_causal) and query.shape[2] > 1
    o = attention(query, key, value, causal=causal, scale=scaling, method=options["method"], eps=options["eps"],
                  window=window if causal else None)
    return o.transpose(1, 2).contiguous(), None


def _mask(*args, **kwargs):
    """sdpa_mask, but a causal sliding window (local_size equal to the config's
    sliding_window; not a chunked or bidirectional one) over a square of queries and
    keys is dropped, so that without padding no mask is made and the attention applies
    the window itself."""
    config = kwargs.get("config")
    if (kwargs.get("local_size") is not None and kwargs.get("allow_is_causal_skip", True)
            and kwargs["local_size"] == getattr(config, "sliding_window", None)
            and getattr(config, "attention_chunk_size", None) is None
            and kwargs.get("q_length") == kwargs.get("kv_length") and not kwargs.get("q_offset")
            and not kwargs.get("kv_offset")):
        kwargs["local_size"] = None
    return sdpa_mask(*args, **kwargs)


def _register():
    AttentionInterface.register(NAME, lorafast_attention_forward)
    AttentionMaskInterface.register(NAME, _mask)


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
