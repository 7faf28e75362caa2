"""lorafast.merge (INTERFACE.md "Export"): a PEFT LoRA adapter merged into its base
model, written as transformers' save_pretrained writes it; the work is the C++
library's (src/io/merge.cpp), the same as `lorafast merge`."""

import numbers
import os

from . import _core

DTYPES = ("f32", "bf16", "f64")


def merge(model, adapter, out, dtype=None, max_shard_size="50GB", force=False):
    """Writes `model` (a directory) with `adapter` (a PEFT directory) merged, W + s B A,
    into the new directory `out`, which appears complete or not at all.

    dtype: "f32", "bf16" or "f64" (default: the base weights'); max_shard_size: bytes,
    or a string like "5GB" as save_pretrained takes it; force: replace an existing
    `out`. Returns {"tensors", "merged", "files", "bytes", "dtype"}. Bad arguments or
    files raise ValueError (nothing is written)."""
    paths = []
    for name, value in (("model", model), ("adapter", adapter), ("out", out)):
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError("%s must be a path, got %s" % (name, type(value).__name__))
        paths.append(os.fspath(value))
    if dtype is not None and dtype not in DTYPES:
        raise ValueError("dtype must be one of %s or None, got %r" % (", ".join(DTYPES), dtype))
    if isinstance(max_shard_size, numbers.Integral) and not isinstance(max_shard_size, bool):
        max_shard_size = str(max_shard_size)
    if not isinstance(max_shard_size, str):
        raise TypeError("max_shard_size must be a number of bytes or a string like '5GB', got %r" % (max_shard_size,))
    if not isinstance(force, bool):
        raise TypeError("force must be True or False, got %r" % (force,))
    return _core.merge(*paths, dtype, max_shard_size, force)
