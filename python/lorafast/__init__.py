"""lorafast: LoRA fine-tuning on CPUs with exact, fast attention gradients, or with
certified almost-linear ones where the attention scores allow (arXiv 2406.03136).

    import lorafast
    o = lorafast.attention(q, k, v, causal=True)        # torch or numpy, [N, H, L, E]
    lorafast.attention_plan(q, k)                        # per head: method, degree, why
    lorafast.merge("base", "adapter", "merged")          # W + s B A, as save_pretrained writes it
"""

import os

# The short OpenMP spin the command line runs with (tools/cli/omp_wait_policy.cpp):
# libgomp's default busy-wait makes 2-thread runs several times slower when the
# cores are shared with other work. libgomp reads it when it loads. A process holds
# one libgomp.so.1, the first loaded: the system's, which our extension links (the
# import just below), or PyTorch's bundled copy when torch was imported first, which
# then runs our kernels too with the settings it read at that import: under load, set
# OMP_WAIT_POLICY=passive before starting Python (bench/attention_vs_torch.py
# --omp-wait-policy; on a loaded 2-core machine an L = 512 forward + backward through
# lorafast.attention took 40 ms under the defaults and 3.3 ms with it passive). The
# user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from ._attention import (Forward, attention, attention_backward, attention_forward,  # noqa: F401,E402
                         attention_plan)
from ._merge import merge  # noqa: F401,E402

__version__ = "0.1.0"


def __getattr__(name):
    # lorafast.transformers imports transformers (heavy, optional): only when used.
    if name == "transformers":
        import importlib
        return importlib.import_module(".transformers", __name__)
    raise AttributeError("module 'lorafast' has no attribute %r" % name)
