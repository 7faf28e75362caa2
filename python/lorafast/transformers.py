"""lorafast.transformers.enable(model): a Hugging Face transformers model, or a PEFT
model wrapping one, computes its self-attention with lorafast.attention.

It registers "lorafast" in transformers' attention-function registry (with SDPA's
mask function, so a causal batch without padding reaches the attention with no
mask) and switches the model to it. A sliding-window layer's causal mask is not
materialised either when there is no padding and queries and keys are the same
positions: lorafast.attention applies the window (the `sliding_window` transformers
passes to the attention function). Packed rows (TRL's padding-free
batches: position ids that restart, no attention mask) run in lorafast too, each
document attending only to itself, and under bf16 autocast (TRL's default) q, k and
v are cast to bf16 as autocast casts them for SDPA. What lorafast does not compute is handed to
transformers' SDPA function: an explicit mask (padding), dropout, a query length
different from the key length (cached decoding), non-CPU or float16 tensors; a window
left out of the mask is then given to SDPA as an explicit mask.
"""

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ._attention import attention, check_options

NAME = "lorafast"
_DEFAULT_OPTIONS = {"method": "auto", "eps": 1e-3}


def _documents(position_ids, batch, length):
    """cu_seqlens of packed rows: a document starts at each row's start and wherever the
    position does not follow the previous one (transformers' find_packed_sequence_indices)."""
    positions = position_ids.expand(batch, -1)
    starts = torch.ones(batch, length, dtype=torch.bool, device=positions.device)
    starts[:, 1:] = positions[:, 1:] != positions[:, :-1] + 1
    return starts.flatten().nonzero().flatten().tolist() + [batch * length]


def lorafast_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                               is_causal=None, **kwargs):
    """transformers' attention-function signature: q [N, H, L, E], k, v [N, H_kv, L, E]
    -> ([N, L, H, E], None)."""
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    cu_seqlens, packed_mask = None, attention_mask
    if getattr(attention_mask, "_lorafast_packed", False) and kwargs.get("position_ids") is not None:
        # transformers' mask of packed rows (restarting position ids, no padding): the
        # documents it encodes, from the same position ids.
        attention_mask = None
        cu_seqlens = _documents(kwargs["position_ids"], query.shape[0], query.shape[2])
    device = query.device.type
    if torch.is_autocast_enabled(device) and torch.get_autocast_dtype(device) == torch.bfloat16:
        # As autocast runs SDPA (TRL trains so by default): q, k and v in bf16, which the
        # projections' outputs only partly are (RoPE's products with float32 tables are not).
        query, key, value = query.to(torch.bfloat16), key.to(torch.bfloat16), value.to(torch.bfloat16)
    window = kwargs.get("sliding_window") if attention_mask is None else None  # None: the mask holds any window
    computable = (attention_mask is None and dropout == 0.0 and query.shape[2] == key.shape[2]
                  and device == "cpu" and query.dtype in (torch.float32, torch.float64, torch.bfloat16)
                  and key.dtype == query.dtype and value.dtype == query.dtype
                  and kwargs.get("position_bias") is None and kwargs.get("softcap") is None
                  and not kwargs.get("output_attentions", False))
    if not computable:
        if cu_seqlens is not None:  # SDPA gets the packed mask back
            attention_mask = packed_mask
        if window is not None and query.shape[2] == key.shape[2]:  # the window _mask left out
            i = torch.arange(query.shape[2], device=query.device)
            in_window = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - window)
            attention_mask = in_window if attention_mask is None else attention_mask & in_window
            is_causal = False
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    options = getattr(module, "_lorafast_options", _DEFAULT_OPTIONS)
    causal = bool(is_causal) and query.shape[2] > 1
    o = attention(query, key, value, causal=causal, scale=scaling, method=options["method"], eps=options["eps"],
                  window=window if causal else None, cu_seqlens=cu_seqlens)
    return o.transpose(1, 2).contiguous(), None


def _mask(*args, **kwargs):
    """sdpa_mask, but a causal sliding window (local_size equal to the config's
    sliding_window; not a chunked or bidirectional one) over a square of queries and
    keys is dropped, so that without padding no mask is made and the attention applies
    the window itself. A mask made without a padding mask, a cache or custom mask
    functions (use_vmap) is causal within the documents of packed rows: it is marked
    so, and the attention reads those documents from the position ids instead."""
    config = kwargs.get("config")
    square = (kwargs.get("q_length") == kwargs.get("kv_length") and not kwargs.get("q_offset")
              and not kwargs.get("kv_offset"))
    if (kwargs.get("local_size") is not None and square
            and (kwargs.get("allow_is_causal_skip", True) or _packed(kwargs, square))
            and kwargs["local_size"] == getattr(config, "sliding_window", None)
            and getattr(config, "attention_chunk_size", None) is None):
        kwargs["local_size"] = None
    mask = sdpa_mask(*args, **kwargs)
    if mask is not None and kwargs.get("local_size") is None and _packed(kwargs, square):
        mask._lorafast_packed = True
    return mask


def _packed(kwargs, square):
    """Whether create_causal_mask asked for this mask only because rows are packed."""
    return (square and kwargs.get("attention_mask") is None and not kwargs.get("use_vmap", False)
            and not kwargs.get("allow_is_causal_skip", True))


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
