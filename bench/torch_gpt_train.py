#!/usr/bin/env python3
"""Times PyTorch eager LoRA fine-tuning on the problem gpt_train_vs_torch.py gives
`lorafast finetune`: the same model directory and token file, the same training
windows (the counter-based sampler of train_data.hpp, restated in gptcase.py), LoRA
on attn.c_attn (q, k, v share A; B starts at zero), AdamW on the adapters only,
gradient-norm clip 1, float32. Prints one JSON object: per-step seconds and losses.

The model is nanoGPT's eager GPT-2 written functionally: addmm for the Conv1D
layers, matmul + masked softmax attention (PyTorch 1.13 has no
scaled_dot_product_attention), tanh GELU, the tied LM head and F.cross_entropy.
Base weights do not require gradients, so autograd skips their gradients as
lorafast does. Weights are views of the file's bytes (no float64 or second copy),
so the process's peak RSS is the training footprint, as for lorafast.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import gptcase  # noqa: E402


def load_model(path):
    """(config, {name without 'transformer.': float32 tensor}) sharing one buffer."""
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    file = os.path.join(path, "model.safetensors")
    blob = bytearray(os.path.getsize(file))
    with open(file, "rb") as f:
        f.readinto(blob)
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            sys.exit(f"{file}: {name} is {info['dtype']}; this benchmark reads F32 models")
        begin, end = info["data_offsets"]
        a = np.frombuffer(blob, dtype="<f4", count=(end - begin) // 4, offset=8 + n + begin)
        tensors[name.removeprefix("transformer.")] = torch.from_numpy(a.reshape(info["shape"]))
    return config, tensors


class LoraGpt:
    def __init__(self, config, w, rank, alpha, seed):
        self.c, self.w = config, w
        D, L = config["n_embd"], config["n_layer"]
        self.scale = alpha / rank
        g = torch.Generator().manual_seed(seed)
        bound = 1 / math.sqrt(D)  # PEFT's A init: kaiming-uniform(a=sqrt(5)) = U(+-1/sqrt(in))
        self.A = [((torch.rand(rank, D, generator=g) * 2 - 1) * bound).requires_grad_() for _ in range(L)]
        self.B = [torch.zeros(3 * D, rank, requires_grad=True) for _ in range(L)]

    def params(self):
        return self.A + self.B

    def loss(self, tokens):
        c, w = self.c, self.w
        N, T = tokens.shape[0], tokens.shape[1] - 1
        D, H, eps = c["n_embd"], c["n_head"], c["layer_norm_epsilon"]
        E = D // H
        inp, tgt = tokens[:, :-1], tokens[:, 1:]
        mask = torch.ones(T, T, dtype=torch.bool).triu_(1)

        def lin(x, name):
            return torch.addmm(w[name + ".bias"], x.reshape(-1, x.shape[-1]), w[name + ".weight"]).view(N, T, -1)

        def ln(x, name):
            return F.layer_norm(x, (D,), w[name + ".weight"], w[name + ".bias"], eps)

        x = w["wte.weight"][inp] + w["wpe.weight"][:T]
        for i in range(c["n_layer"]):
            p = "h.%d." % i
            h = ln(x, p + "ln_1")
            qkv = lin(h, p + "attn.c_attn") + self.scale * ((h @ self.A[i].t()) @ self.B[i].t())
            q, k, v = (z.view(N, T, H, E).transpose(1, 2) for z in qkv.split(D, dim=-1))
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(E))
            att = att.masked_fill(mask, float("-inf")).softmax(dim=-1)
            x = x + lin((att @ v).transpose(1, 2).reshape(N, T, D), p + "attn.c_proj")
            x = x + lin(F.gelu(lin(ln(x, p + "ln_2"), p + "mlp.c_fc"), approximate="tanh"), p + "mlp.c_proj")
        logits = ln(x, "ln_f") @ w["wte.weight"].t()
        return F.cross_entropy(logits.view(N * T, -1), tgt.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="uint16 token ids")
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, required=True, help="updates, the first ones included (warmup)")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    config, w = load_model(args.model)
    tokens = np.fromfile(args.data, dtype="<u2").astype(np.int64)
    model = LoraGpt(config, w, args.rank, float(args.rank), args.seed)
    opt = torch.optim.AdamW(model.params(), lr=args.lr, weight_decay=0.0)
    seconds, losses = [], []
    for step in range(1, args.steps + 1):
        batch = torch.from_numpy(gptcase.sample_windows(tokens, args.seq_len, args.batch, args.seed, step, 0))
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model.loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.params(), 1.0)
        opt.step()
        seconds.append(time.perf_counter() - t0)
        losses.append(float(loss))
    print(json.dumps({"seconds": seconds, "losses": losses, "torch": torch.__version__,
                      "torch_threads": torch.get_num_threads(), "tokens_per_step": args.batch * args.seq_len}))


if __name__ == "__main__":
    main()
