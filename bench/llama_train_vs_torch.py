#!/usr/bin/env python3
"""Llama LoRA fine-tuning throughput and peak memory: `lorafast finetune` vs
transformers + PEFT (attn_implementation "sdpa" and "eager").

A Llama-shaped model with random weights (transformers' own initialisation, written
by its save_pretrained: 12 layers, hidden 768, 12 heads, 4 key/value heads,
intermediate 2048, vocab 32000, tied embeddings, max_position_embeddings 1024;
100.1M parameters) trains on random uint16 token ids at --seq-len 1024: LoRA rank 8
(alpha 8) on q_proj and v_proj, AdamW on the adapters, clip 1, float32.
bench/torch_llama_train.py runs the same model directory, token file and training
windows in transformers + PEFT. The sides, their ratios, the roofline, table and
figure are train_sides.py's, the harness gpt_train_vs_torch.py's (one process
per side and round, peak RSS from GNU time, OMP_WAIT_POLICY=passive, untimed
--warmup updates, tokens/s from the fastest round's median timed update, the load
average sampled during each side); step 1's loss must agree between all sides (same
model, same windows, B = 0 everywhere) before anything is reported.

Writes bench/results/llama_train_vs_torch.{csv,json,png} and prints a markdown table,
and a roofline: the step's nominal FLOPs (nominal_gflop_per_step) at the rate of a
large sgemm measured in the same run (`lorafast bench`), and at the machine's f32
multiply-add peak that `lorafast bench` measures beside it, i.e. the fastest any f32
implementation of this step could be on this machine, and the ceilings these put on
the speedup over each transformers side.

--dtype bf16 measures bf16 mixed precision instead (files llama_train_vs_torch_bf16.*):
lorafast `finetune --dtype bf16` (frozen weights in bf16, bf16 x bf16 -> f32 products,
adapters, AdamW, norms and the loss in f32) is the anchor, beside lorafast f32 in the
same invocation (so "vs our f32" is a same-run ratio, time and peak RSS) and four
transformers + PEFT sides (torch_llama_train.py --precision): sdpa and eager, each
(a) under torch.autocast("cpu", torch.bfloat16) on the f32 model and (b) loaded with
dtype=torch.bfloat16, where PEFT's autocast_adapter_dtype=True (its default) keeps
the LoRA A/B, their gradients and AdamW's state in f32. Every side's step-1 loss must
agree with lorafast f32's (no bf16 rounding in it) within LOSS_AGREEMENT_BF16 (2^-10
relative; gpt_train_vs_torch.py says why, with the measured bf16 errors). The
roofline is against the bf16 dot-product peak `lorafast bench` measures in the same
run (bf16_peak: vdpbf16ps chains on every thread); `lorafast bench` reports no bf16
GEMM rate, so there is no practical bf16 ceiling beside it. lorafast f32's share of
the f32 multiply-add peak is printed too.

torch.compile is not a default side: on CPU, inductor compiled the 2-layer --quick
model's PEFT training step (forward and backward, sdpa, bf16 autocast) in 153 s (on a
host with load 7 on 2 cores; the compiled steps after it were no faster than eager
on that tiny model), and the 12-layer model's graph is six times larger. --compile
adds the two compiled sdpa sides (autocast, bf16 weights) for a run that can afford
it; the compilation falls in the untimed --warmup update, which must be at least 1.

    python3 bench/llama_train_vs_torch.py              # the 100M Llama shape, seq-len 1024, 2 threads
    python3 bench/llama_train_vs_torch.py --quick      # a tiny model (smoke test: step-1 losses only)
    python3 bench/llama_train_vs_torch.py --replot     # redraw the PNG from the JSON
    python3 bench/llama_train_vs_torch.py --dtype bf16 # the bf16 sides (also with --quick, --replot)
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gpt_train_vs_torch as gptbench  # noqa: E402
import lfbench  # noqa: E402
import train_sides  # noqa: E402


def make_inputs(args, work):
    """The model directory (transformers' save_pretrained) and token file, generated once into `work`."""
    import torch
    import transformers

    key = (f"L{args.layers}_H{args.heads}_K{args.kv_heads}_D{args.width}_F{args.intermediate}_V{args.vocab}"
           f"_P{args.positions}_s{args.seed}")
    model, data = work / key / "model", work / key / "ids.uint16"
    if not (model / "model.safetensors").exists():
        lfbench.progress(f"generating the random Llama model {key} in {work}")
        torch.manual_seed(args.seed)
        config = transformers.LlamaConfig(vocab_size=args.vocab, hidden_size=args.width,
                                          intermediate_size=args.intermediate, num_hidden_layers=args.layers,
                                          num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                                          max_position_embeddings=args.positions, tie_word_embeddings=True)
        transformers.LlamaForCausalLM(config).save_pretrained(model)
    if not data.exists():
        rng = np.random.default_rng(args.seed + 1)
        rng.integers(0, args.vocab, max(1 << 16, 4 * (args.seq_len + 1))).astype("<u2").tofile(data)
    return model, data


def nominal_gflop_per_step(args):
    """GFLOP of one update: every frozen linear layer and the LM head forward (2 FLOP per
    weight per token) and back to its input (the same again; the first block's q/k/v
    input gradient is not needed), plus exact attention at 14 T^2 E per head (half:
    causal). LoRA's rank-8 products and the elementwise work are left out."""
    tokens, d, f, e = args.batch * args.seq_len, args.width, args.intermediate, args.width // args.heads
    qkv = d * (args.heads + 2 * args.kv_heads) * e
    block = qkv + args.heads * e * d + 3 * d * f
    head = args.vocab * d
    linear = 2 * tokens * (2 * (args.layers * block + head) - qkv)
    attention = args.layers * args.batch * args.heads * 14 * args.seq_len ** 2 * e / 2
    return (linear + attention) / 1e9


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lorafast", default=str(lfbench.DEFAULT_BINARY), help="path to the lorafast binary")
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4, help="timed updates per side (after --warmup)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed first updates")
    ap.add_argument("--rounds", type=int, default=1, help="run every side this many times, keep the best")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--width", type=int, default=768, help="hidden_size")
    ap.add_argument("--intermediate", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--positions", type=int, default=1024)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--method", default="exact", help="lorafast's attention method")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32",
                    help="bf16: lorafast --dtype bf16 (and f32) against transformers + PEFT under bf16 autocast and "
                         "loaded in bf16; results in llama_train_vs_torch_bf16.*")
    ap.add_argument("--compile", action="store_true",
                    help="--dtype bf16: add torch.compile'd transformers sdpa sides (minutes of compilation each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="a tiny model (2 layers, hidden 64, 4/2 heads, vocab 512, T=64): checks the step-1 losses "
                         "agree, writes and times nothing")
    ap.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON of the last run")
    ap.add_argument("--work-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "lorafast-llama-bench"),
                    help="where the generated model and token file are cached")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    args = ap.parse_args()
    if args.quick:
        args.layers, args.heads, args.kv_heads, args.width, args.intermediate = 2, 4, 2, 64, 128
        args.vocab, args.positions, args.seq_len, args.steps, args.warmup, args.rounds = 512, 64, 64, 1, 0, 1
    if args.compile and (args.dtype != "bf16" or args.warmup < 1):
        sys.exit("--compile needs --dtype bf16 and --warmup >= 1 (the compilation happens in the first update)")
    return args


LLAMA = train_sides.Family(
    name="llama_train_vs_torch", script="llama_train_vs_torch.py",
    columns=gptbench.COLUMNS[:4] + ["kv_heads", "intermediate"] + gptbench.COLUMNS[4:],
    targets=["q_proj", "v_proj"], make_inputs=make_inputs, nominal_gflop_per_step=nominal_gflop_per_step,
    title=lambda row, settings: "Llama LoRA fine-tuning",
    row_extra=lambda args: {"kv_heads": args.kv_heads, "intermediate": args.intermediate})

if __name__ == "__main__":
    train_sides.main(parse_args(), LLAMA)
