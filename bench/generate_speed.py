#!/usr/bin/env python3
"""Generation speed: `lorafast generate` with the KV cache against the full-recompute
path it replaces and against transformers' `generate`.

1. models/default (4 layers, width 192, bytes), 400 greedy tokens after a short
   prompt, `--positions 512` (400 tokens exceed its 256 trained positions): --old, a
   binary built before the KV cache (commit 5d963fb: it recomputes the whole prefix
   for every token), vs the new one; skipped without --old.
2. A GPT-2-124M-shaped model (12 layers, 12 heads, width 768, vocab 50257, random
   weights from transformers' own init) written by save_pretrained in float32: 400
   greedy tokens after an 8-id prompt, `lorafast generate --prompt-ids` vs
   transformers' `model.generate(do_sample=False)` (use_cache; attention: transformers'
   default for a model built from a config, sdpa in transformers 5).

Every side runs on --threads threads (default 2). lorafast's tokens/s is
(400 - 1) / (wall(400 tokens) - wall(1 token)) over whole processes, so model
loading and the prompt's pass cancel out; transformers' is the same difference
inside one process after a warm-up call. Each figure is the best of --rounds runs.
The host's 1-minute load average is recorded: on a shared machine the numbers are
as measured under that load.

--dtype bf16 measures bf16 generation instead (case 2 only; bench/results/
generate_speed_bf16.csv): the same float32 model directory, `lorafast generate --dtype
bf16` (the frozen weights rounded to bf16 once at load, each decoding step's products
bf16 x bf16 -> f32, everything else f32) and plain `lorafast generate` (f32) in the
same invocation, against transformers' `generate` on the model cast with
.to(torch.bfloat16) (weights, activations and KV cache in bf16). "speedup" is against
transformers bf16, "vs_lorafast_f32" against our own f32 side of the same run.

    python3 bench/generate_speed.py [--old PATH] [--new PATH] [--threads 2] [--rounds 1]
    python3 bench/generate_speed.py --dtype bf16 [--new PATH] [--rounds 3]
    python3 bench/generate_speed.py --quick [--dtype bf16]   # a tiny GPT-2 (2 layers, width 64): runs every side, writes nothing

Writes bench/results/generate_speed.csv.
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKENS = 400
PROMPT = "ROMEO:\n"
COLUMNS = ["case", "side", "layers", "width", "vocab", "threads", "tokens", "seconds", "tokens_per_s", "speedup",
           "loadavg", "note"]
BF16_COLUMNS = COLUMNS[:10] + ["vs_lorafast_f32"] + COLUMNS[10:]
PROMPT_IDS = [464, 2068, 7586, 21831, 18045, 625, 262, 16931]
GREEDY = dict(do_sample=False, pad_token_id=0, use_cache=True, eos_token_id=None)


def wall(cmd):
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True)
    if p.returncode != 0:
        sys.exit("%s: exit %d\n%s" % (" ".join(map(str, cmd)), p.returncode, p.stderr.decode()))
    return time.perf_counter() - start, p.stdout


def lf_rate(binary, args, rounds):
    """(seconds for TOKENS - 1 tokens, stdout of the full run), best of `rounds`."""
    best, out = None, b""
    for _ in range(rounds):
        t1, _ = wall([binary, "generate", *args, "--tokens", "1"])
        tn, out = wall([binary, "generate", *args, "--tokens", str(TOKENS)])
        best = tn - t1 if best is None else min(best, tn - t1)
    return best, out


def row(case, side, shape, threads, seconds, note, base=None):
    rate = (TOKENS - 1) / seconds
    return {"case": case, "side": side, "layers": shape[0], "width": shape[1], "vocab": shape[2], "threads": threads,
            "tokens": TOKENS, "seconds": round(seconds, 3), "tokens_per_s": round(rate, 1),
            "speedup": "" if base is None else round(base / seconds, 2), "loadavg": round(os.getloadavg()[0], 2),
            "note": note}


def default_model(args):
    model = str(ROOT / "models" / "default")
    common = ["--model", model, "--prompt", PROMPT, "--positions", "512", "--threads", str(args.threads), "--no-echo"]
    old_s, old_out = lf_rate(args.old, common + ["--temperature", "0"], args.rounds)  # the old binary has no --greedy
    new_s, new_out = lf_rate(args.new, common + ["--greedy"], args.rounds)
    same = "identical text" if old_out == new_out else "texts differ"
    shape = (4, 192, 256)
    return [row("default", "lorafast full recompute (old)", shape, args.threads, old_s, same),
            row("default", "lorafast KV cache (new)", shape, args.threads, new_s, same, base=old_s)]


def gpt2_model(args, work):
    """transformers' GPT-2 (124M, or the --quick tiny shape) with its own random init,
    saved in float32 to `work`; returns (model in eval mode, shape)."""
    import torch
    import transformers
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    # --quick: no eos (50256 is outside the vocab), so both sides always run to TOKENS.
    shape = dict(n_layer=2, n_head=2, n_embd=64, vocab_size=512, n_positions=512, bos_token_id=None,
                 eos_token_id=None) if args.quick else {}
    config = transformers.GPT2Config(resid_pdrop=0, embd_pdrop=0, attn_pdrop=0, **shape)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(work)
    return model, (config.n_layer, config.n_embd, config.vocab_size)


def prompt_ids(vocab):
    return [i % vocab for i in PROMPT_IDS]


def transformers_rate(model, rounds, prompt):
    """(seconds for TOKENS - 1 tokens, the greedy ids of the full run), best of `rounds`:
    generate(TOKENS) minus generate(1) in this process, after a warm-up call."""
    import torch
    ids = torch.tensor([prompt])
    with torch.no_grad():
        model.generate(ids, max_new_tokens=8, **GREEDY)  # warm-up
        best, theirs = None, None
        for _ in range(rounds):
            start = time.perf_counter()
            model.generate(ids, max_new_tokens=1, **GREEDY)
            t1 = time.perf_counter() - start
            start = time.perf_counter()
            theirs = model.generate(ids, max_new_tokens=TOKENS, **GREEDY)[0, len(prompt):].tolist()
            tn = time.perf_counter() - start
            best = tn - t1 if best is None else min(best, tn - t1)
    return best, theirs


def lorafast_ids_rate(args, work, prompt, dtype="f32"):
    """(seconds for TOKENS - 1 tokens, greedy ids) of `lorafast generate --prompt-ids` on the saved model."""
    flags = [] if dtype == "f32" else ["--dtype", dtype]
    seconds, out = lf_rate(args.new, ["--model", work, "--prompt-ids", ",".join(map(str, prompt)), "--greedy",
                                      "--no-echo", "--threads", str(args.threads), *flags], args.rounds)
    return seconds, [int(x) for x in out.split()]


def agreement(ours, theirs, precision):
    agree = sum(a == b for a, b in zip(ours, theirs))
    return "%d/%d greedy ids equal (%s; near-ties of a random model may diverge)" % (agree, len(theirs), precision)


def gpt2_124m(args, work):
    model, shape = gpt2_model(args, work)
    prompt = prompt_ids(shape[2])
    best, theirs = transformers_rate(model, args.rounds, prompt)
    # The random model's config has eos_token_id 50256; --tokens runs to the end only if it is never drawn.
    lf_s, ours = lorafast_ids_rate(args, work, prompt)
    note = agreement(ours, theirs, "f32 on both sides")
    case = "gpt2-tiny" if args.quick else "gpt2-124m"
    return [row(case, "transformers generate", shape, args.threads, best, note),
            row(case, "lorafast KV cache (new)", shape, args.threads, lf_s, note, base=best)]


def gpt2_124m_bf16(args, work):
    """transformers generate in bf16, lorafast generate --dtype bf16 and lorafast f32, one run."""
    import torch
    model, shape = gpt2_model(args, work)
    prompt = prompt_ids(shape[2])
    best, theirs = transformers_rate(model.to(torch.bfloat16), args.rounds, prompt)
    f32_s, f32_ids = lorafast_ids_rate(args, work, prompt)
    bf16_s, bf16_ids = lorafast_ids_rate(args, work, prompt, "bf16")
    case = "gpt2-tiny" if args.quick else "gpt2-124m"
    rows = [row(case, "transformers generate bf16", shape, args.threads, best, ""),
            row(case, "lorafast f32", shape, args.threads, f32_s, agreement(f32_ids, theirs, "ours f32, theirs bf16"),
                base=best),
            row(case, "lorafast bf16", shape, args.threads, bf16_s, agreement(bf16_ids, theirs, "bf16 on both sides"),
                base=best)]
    for r, seconds in zip(rows, (best, f32_s, bf16_s)):
        r["vs_lorafast_f32"] = round(f32_s / seconds, 2)
    return rows


def print_table(rows, columns):
    keys = [c for c in ("case", "side", "tokens_per_s", "speedup", "vs_lorafast_f32", "loadavg", "note") if c in columns]
    labels = {"tokens_per_s": "tokens/s", "vs_lorafast_f32": "vs our f32"}
    print("| " + " | ".join(labels.get(k, k) for k in keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", help="a binary built before the KV cache (e.g. commit 5d963fb), whose generate "
                                   "recomputes the prefix; without it the default-model comparison is skipped")
    ap.add_argument("--new", default=str(ROOT / "build" / "lorafast"), help="binary with the KV cache")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32",
                    help="bf16: lorafast --dtype bf16 and f32 against transformers generate in bf16")
    ap.add_argument("--quick", action="store_true", help="a tiny GPT-2 instead of the 124M shape; writes nothing")
    ap.add_argument("--out", help="CSV path (default bench/results/generate_speed[_bf16].csv)")
    args = ap.parse_args()
    stem = "generate_speed" + ("_bf16" if args.dtype == "bf16" else "")
    args.out = args.out or str(ROOT / "bench" / "results" / f"{stem}.csv")
    rows = default_model(args) if args.old and args.dtype == "f32" and not args.quick else []
    with tempfile.TemporaryDirectory() as work:
        rows += (gpt2_124m_bf16 if args.dtype == "bf16" else gpt2_124m)(args, work)
    columns = BF16_COLUMNS if args.dtype == "bf16" else COLUMNS
    if not args.quick:
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            w.writerows(rows)
    print_table(rows, columns)
    if not args.quick:
        print("wrote", args.out)


if __name__ == "__main__":
    main()
