#!/usr/bin/env python3
"""Times transformers + PEFT LoRA fine-tuning on the problem llama_train_vs_torch.py
gives `lorafast finetune`: the same Llama model directory (read by
AutoModelForCausalLM.from_pretrained, attn_implementation --attn), token file and
training windows (the counter-based sampler of train_data.hpp, restated in
gptcase.py), PEFT LoRA on --targets (its init: A kaiming-uniform, B = 0, as
lorafast's), no dropout, AdamW on the adapters only, gradient-norm clip 1. The loss is
F.cross_entropy of the logits taken in f32, the mean lorafast computes. Prints one
JSON object: per-step seconds and losses, and the dtypes the adapters and the frozen
weights ended up in.

--precision picks how the model computes:
- f32: weights, activations and products in float32.
- autocast: float32 weights, the forward (and so its backward) under
  torch.autocast("cpu", torch.bfloat16): linear layers and matmuls take bf16
  operands and return bf16, norms and softmax run in f32 (autocast's own op lists).
- bf16: the model loaded with dtype=torch.bfloat16 (weights, residual stream and
  activations in bf16; transformers' RMSNorm and eager softmax upcast to f32
  inside). PEFT's get_peft_model(autocast_adapter_dtype=True), its default, upcasts
  the bf16 LoRA A/B it creates to float32 (peft.tuners.tuners_utils.cast_adapter_dtype),
  and LoRA's forward casts x to the adapter's dtype, runs B(A(x)) in f32 and casts the
  sum back to bf16; so the adapters, their gradients and AdamW's state are f32.
--compile wraps the PEFT model in torch.compile (inductor, default mode); the first
updates include the compilation, so they belong in the warm-up.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import peft
import torch
import torch.nn.functional as F
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import gptcase  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="uint16 token ids")
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, required=True, help="updates, the first ones included (warmup)")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--targets", nargs="+", default=["q_proj", "v_proj"])
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--precision", default="f32", choices=["f32", "autocast", "bf16"])
    ap.add_argument("--compile", action="store_true", help="torch.compile the PEFT model")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    load_dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=load_dtype,
                                                              attn_implementation=args.attn)
    for m in model.modules():  # lorafast has no dropout; GPT-2's config defaults to 0.1 (Llama's to 0)
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    model = peft.get_peft_model(model, peft.LoraConfig(r=args.rank, lora_alpha=args.rank, lora_dropout=0.0,
                                                       target_modules=args.targets))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    dtypes = {"adapter_dtype": str(params[0].dtype), "frozen_dtype": str(next(
        p for p in model.parameters() if not p.requires_grad).dtype)}
    forward = torch.compile(model) if args.compile else model
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "autocast")
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    tokens = np.fromfile(args.data, dtype="<u2").astype(np.int64)
    seconds, losses = [], []
    for step in range(1, args.steps + 1):
        batch = torch.from_numpy(gptcase.sample_windows(tokens, args.seq_len, args.batch, args.seed, step, 0))
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast:
            logits = forward(input_ids=batch[:, :-1], use_cache=False).logits
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        seconds.append(time.perf_counter() - t0)
        losses.append(float(loss.detach()))
    print(json.dumps({"seconds": seconds, "losses": losses, "torch": torch.__version__,
                      "transformers": transformers.__version__, "peft": peft.__version__,
                      "torch_threads": torch.get_num_threads(), "tokens_per_step": args.batch * args.seq_len,
                      "precision": args.precision, "compile": args.compile, **dtypes}))


if __name__ == "__main__":
    main()
