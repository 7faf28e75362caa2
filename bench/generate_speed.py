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
   transformers' `model.generate(do_sample=False)` (use_cache, eager attention).

Every side runs on --threads threads (default 2). lorafast's tokens/s is
(400 - 1) / (wall(400 tokens) - wall(1 token)) over whole processes, so model
loading and the prompt's pass cancel out; transformers' is the same difference
inside one process after a warm-up call. Each figure is the best of --rounds runs.
The host's 1-minute load average is recorded: on a shared machine the numbers are
as measured under that load.

    python3 bench/generate_speed.py [--old PATH] [--new PATH] [--threads 2] [--rounds 1]

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


def gpt2_124m(args, work):
    import torch
    import transformers
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    config = transformers.GPT2Config(resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(work)
    ids = [464, 2068, 7586, 21831, 18045, 625, 262, 16931]
    kw = dict(do_sample=False, pad_token_id=0, use_cache=True, eos_token_id=None)
    with torch.no_grad():
        model.generate(torch.tensor([ids]), max_new_tokens=8, **kw)  # warm-up
        best, theirs = None, None
        for _ in range(args.rounds):
            start = time.perf_counter()
            model.generate(torch.tensor([ids]), max_new_tokens=1, **kw)
            t1 = time.perf_counter() - start
            start = time.perf_counter()
            theirs = model.generate(torch.tensor([ids]), max_new_tokens=TOKENS, **kw)[0, len(ids):].tolist()
            tn = time.perf_counter() - start
            best = tn - t1 if best is None else min(best, tn - t1)
    # The random model's config has eos_token_id 50256; --tokens runs to the end only if it is never drawn.
    lf_s, out = lf_rate(args.new, ["--model", work, "--prompt-ids", ",".join(map(str, ids)), "--greedy", "--no-echo",
                                   "--threads", str(args.threads)], args.rounds)
    ours = [int(x) for x in out.split()]
    agree = sum(a == b for a, b in zip(ours, theirs))
    note = "%d/%d greedy ids equal (f32 on both sides; near-ties of a random model may diverge)" % (agree, len(theirs))
    shape = (12, 768, 50257)
    return [row("gpt2-124m", "transformers generate", shape, args.threads, best, note),
            row("gpt2-124m", "lorafast KV cache (new)", shape, args.threads, lf_s, note, base=best)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", help="a binary built before the KV cache (e.g. commit 5d963fb), whose generate "
                                   "recomputes the prefix; without it the default-model comparison is skipped")
    ap.add_argument("--new", default=str(ROOT / "build" / "lorafast"), help="binary with the KV cache")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "generate_speed.csv"))
    args = ap.parse_args()
    rows = default_model(args) if args.old else []
    with tempfile.TemporaryDirectory() as work:
        rows += gpt2_124m(args, work)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    print("| case | side | tokens/s | speedup | loadavg | note |\n|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %s | %s | %s | %s |" % (r["case"], r["side"], r["tokens_per_s"], r["speedup"], r["loadavg"],
                                                  r["note"]))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
