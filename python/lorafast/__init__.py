"""lorafast: LoRA fine-tuning on CPUs with exact, fast attention gradients, or with
certified almost-linear ones where the attention scores allow (arXiv 2406.03136).

    import lorafast
    o = lorafast.attention(q, k, v, causal=True)        # torch or numpy, [N, H, L, E]
    lorafast.attention_plan(q, k)                        # per head: method, degree, why
"""

from ._attention import (Forward, attention, attention_backward, attention_forward,  # noqa: F401
                         attention_plan)

__version__ = "0.1.0"


def __getattr__(name):
    # lorafast.transformers imports transformers (heavy, optional): only when used.
    if name == "transformers":
        import importlib
        return importlib.import_module(".transformers", __name__)
    raise AttributeError("module 'lorafast' has no attribute %r" % name)
