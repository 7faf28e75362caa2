"""Tiny GPT-2 models and PEFT adapters for the Python tests, and the PyTorch oracle.

- `random_model`: GPT-2 tensors (Conv1D weights [in, out]) and config.json values;
- `write_model_dir` / `write_adapter_dir`: the Hugging Face / PEFT directory layouts
  of INTERFACE.md ("Models, adapters, fine-tuning"); `read_model_dir` reads the former;
- `splitmix64`, `sample_windows`, `lr_at`: the training window sampler and the
  learning-rate schedule, restated to replay training runs in PyTorch;
- `torch_loss_and_grads`: GPT-2 with LoRA re-implemented in PyTorch (pre-LN blocks,
  causal multi-head attention, tanh GELU, tied LM head, mean next-token
  cross-entropy) and autograd of the loss w.r.t. every adapter tensor and, on
  request, every base tensor.

Shape legend: N windows, T predicted tokens per window, D width = H * E, V vocab,
R LoRA rank. Only numpy and torch from Debian are used.
"""

import json
import math
import os

import numpy as np
import torch

import lfcase

TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
MASK = (1 << 64) - 1


def target_dims(target, D):
    """(in, out) of a Conv1D module."""
    return {"attn.c_attn": (D, 3 * D), "attn.c_proj": (D, D), "mlp.c_fc": (D, 4 * D),
            "mlp.c_proj": (4 * D, D)}[target]


def random_model(rng, layers, heads, D, V, P):
    """(config dict, {GPT-2 name without prefix: float64 array})."""
    config = {"n_layer": layers, "n_head": heads, "n_embd": D, "n_positions": P, "vocab_size": V,
              "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new", "model_type": "gpt2"}
    t = {"wte.weight": rng.standard_normal((V, D)), "wpe.weight": 0.3 * rng.standard_normal((P, D))}
    for i in range(layers):
        h = "h.%d." % i
        for ln in ("ln_1", "ln_2"):
            t[h + ln + ".weight"] = 1 + 0.1 * rng.standard_normal(D)
            t[h + ln + ".bias"] = 0.1 * rng.standard_normal(D)
        for target in TARGETS:
            fan_in, fan_out = target_dims(target, D)
            t[h + target + ".weight"] = rng.standard_normal((fan_in, fan_out)) / math.sqrt(fan_in)
            t[h + target + ".bias"] = 0.1 * rng.standard_normal(fan_out)
    t["ln_f.weight"] = 1 + 0.1 * rng.standard_normal(D)
    t["ln_f.bias"] = 0.1 * rng.standard_normal(D)
    return config, t


def write_model_dir(path, config, tensors, prefixed=True, dtype=np.float64):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    prefix = "transformer." if prefixed else ""
    lfcase.write_safetensors(os.path.join(path, "model.safetensors"),
                             {prefix + k: np.asarray(v, dtype=dtype) for k, v in tensors.items()})


def read_model_dir(path):
    """(config dict, {GPT-2 name without prefix: float64 array}) of a model directory."""
    with open(os.path.join(path, "config.json")) as f:
        config = json.load(f)
    tensors = lfcase.read_safetensors(os.path.join(path, "model.safetensors"))
    return config, {k[len("transformer."):] if k.startswith("transformer.") else k: np.asarray(v, dtype=np.float64)
                    for k, v in tensors.items()}


def peft_name(layer, target, which):
    return "base_model.model.transformer.h.%d.%s.lora_%s.weight" % (layer, target, which)


def random_adapter(rng, layers, D, R, targets, qkv="qkv"):
    """{peft name: array}: A ~ U(+-1/sqrt(in)) as PEFT, B ~ N(0, 0.25/R) so that every
    gradient term is live, the c_attn B rows outside `qkv` kept at zero."""
    out = {}
    for i in range(layers):
        for target in targets:
            fan_in, fan_out = target_dims(target, D)
            bound = 1 / math.sqrt(fan_in)
            out[peft_name(i, target, "A")] = rng.uniform(-bound, bound, (R, fan_in))
            b = 0.5 * rng.standard_normal((fan_out, R)) / math.sqrt(R)
            if target == "attn.c_attn":
                for p, letter in enumerate("qkv"):
                    if letter not in qkv:
                        b[p * D:(p + 1) * D] = 0
            out[peft_name(i, target, "B")] = b
    return out


def write_adapter_dir(path, tensors, R, alpha, targets, rslora=False, qkv="qkv", dtype=np.float64):
    os.makedirs(path, exist_ok=True)
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": R, "lora_alpha": alpha,
              "target_modules": list(targets), "fan_in_fan_out": True, "use_rslora": rslora,
              "bias": "none", "base_model_name_or_path": "tiny", "lora_dropout": 0.0}
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump(config, f)
    metadata = {"format": "pt"}
    if qkv != "qkv":
        metadata["lorafast.c_attn_qkv"] = qkv
    lfcase.write_safetensors(os.path.join(path, "adapter_model.safetensors"),
                             {k: np.asarray(v, dtype=dtype) for k, v in tensors.items()}, metadata)


def write_tokens(path, tokens):
    """One window of T + 1 token ids per line."""
    with open(path, "w") as f:
        for row in np.asarray(tokens):
            f.write(" ".join(str(int(t)) for t in row) + "\n")


def torch_loss_and_grads(config, model, adapter, tokens, R=1, alpha=1.0, rslora=False, qkv="qkv",
                         dtype=torch.float64, base_grads=False):
    """Mean next-token cross-entropy of the windows `tokens` [N, T + 1] and its
    gradient w.r.t. every adapter tensor (frozen c_attn B rows outside `qkv` zeroed)
    and, with `base_grads`, every base tensor (wte's covers the tied LM head too).
    Returns {"loss": float, peft name or GPT-2 name without prefix: float64 array}."""
    D, H = config["n_embd"], config["n_head"]
    E, eps = D // H, config["layer_norm_epsilon"]
    s = alpha / math.sqrt(R) if rslora else alpha / R
    w = {k: torch.tensor(np.asarray(v, dtype=np.float64), dtype=dtype, requires_grad=base_grads)
         for k, v in model.items()}
    leaves = {k: torch.tensor(np.asarray(v, dtype=np.float64), dtype=dtype, requires_grad=True)
              for k, v in adapter.items()}
    tok = torch.tensor(np.asarray(tokens, dtype=np.int64))
    inp, tgt = tok[:, :-1], tok[:, 1:]
    N, T = inp.shape

    def conv1d(x, i, target):  # y = x W + b + s x A^T B^T
        y = x @ w["h.%d.%s.weight" % (i, target)] + w["h.%d.%s.bias" % (i, target)]
        a = leaves.get(peft_name(i, target, "A"))
        if a is not None:
            y = y + s * (x @ a.T) @ leaves[peft_name(i, target, "B")].T
        return y

    def ln(x, name):
        return torch.nn.functional.layer_norm(x, (D,), w[name + ".weight"], w[name + ".bias"], eps)

    causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    x = w["wte.weight"][inp] + w["wpe.weight"][:T]
    for i in range(config["n_layer"]):
        qkv_out = conv1d(ln(x, "h.%d.ln_1" % i), i, "attn.c_attn")
        q, k, v = (t.reshape(N, T, H, E).transpose(1, 2) for t in qkv_out.split(D, dim=-1))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(E)
        probs = torch.softmax(scores.masked_fill(causal, float("-inf")), dim=-1)
        a = (probs @ v).transpose(1, 2).reshape(N, T, D)
        x = x + conv1d(a, i, "attn.c_proj")
        m = torch.nn.functional.gelu(conv1d(ln(x, "h.%d.ln_2" % i), i, "mlp.c_fc"), approximate="tanh")
        x = x + conv1d(m, i, "mlp.c_proj")
    logits = ln(x, "ln_f") @ w["wte.weight"].T
    loss = torch.nn.functional.cross_entropy(logits.reshape(N * T, -1), tgt.reshape(N * T))
    loss.backward()
    out = {"loss": float(loss.detach())}
    if base_grads:
        out.update({name: t.grad.detach().to(torch.float64).numpy().copy() for name, t in w.items()})
    for name, leaf in leaves.items():
        g = leaf.grad.detach().to(torch.float64).numpy().copy()
        if ".attn.c_attn.lora_B" in name:
            for p, letter in enumerate("qkv"):
                if letter not in qkv:
                    g[p * D:(p + 1) * D] = 0
        out[name] = g
    return out


# ---------------------------------------------------------------- training restated

def splitmix64(x):
    """SplitMix64's mixing function (train_data.hpp)."""
    z = (x + 0x9e3779b97f4a7c15) & MASK
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & MASK
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & MASK
    return z ^ (z >> 31)


def sample_windows(tokens, T, B, seed, step, micro):
    """The training windows [B, T + 1] of update `step`, micro-batch `micro` (train_data.hpp)."""
    key = splitmix64(splitmix64(splitmix64(seed) ^ step) ^ micro)
    starts = [splitmix64(key ^ n) % (len(tokens) - T) for n in range(B)]
    return np.array([tokens[s:s + T + 1] for s in starts], dtype=np.int64)


def lr_at(step, peak, warmup, total, floor_ratio):
    """LrSchedule::at: linear warmup, then a half cosine down to floor_ratio * peak."""
    if warmup > 0 and step <= warmup:
        return peak * step / warmup
    floor = floor_ratio * peak
    if total - warmup <= 0:
        return floor
    progress = min(1.0, max(0.0, (step - warmup) / (total - warmup)))
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))
