"""Encode speed: lorafast's tokenizer vs the Hugging Face tokenizers library, both
single-threaded, on Tiny Shakespeare with a GPT-2-style byte-level BPE (ByteLevel
pre-tokenizer with GPT-2's regex, ByteLevel decoder) that the library trains here.

Both sides encode the whole file as one string in the same run: the library's
Tokenizer.encode(text, add_special_tokens=False) with RAYON_NUM_THREADS=1, and
lorafast's Tokenizer::encode as timed by `lorafast tokenize --time --threads 1` (the
library call only: not the process start, the file reads or printing the ids). The
ids are checked to be identical before anything is timed; each side keeps its best
of --rounds. Writes bench/results/tokenizer_vs_hf.csv and prints tokens/s and the ratio.
"""

import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def train_gpt2_style(text, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(text.splitlines(keepends=True), trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"], show_progress=False))
    return tok


def lorafast_encode(binary, tokenizer_path, corpus_path):
    """(ids, seconds of the encode call) from `lorafast tokenize --time`."""
    proc = subprocess.run([binary, "tokenize", "--tokenizer", tokenizer_path, "--in", corpus_path, "--time",
                           "--threads", "1"], capture_output=True, check=True)
    m = re.search(r"tokens in ([0-9.]+) s", proc.stderr.decode())
    if m is None:
        sys.exit("no timing on stderr: %r" % proc.stderr.decode()[:300])
    return [int(x) for x in proc.stdout.split()], float(m.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lorafast", default=str(ROOT / "build" / "lorafast"), help="path to the lorafast binary")
    ap.add_argument("--corpus", default=str(ROOT / "data" / "tinyshakespeare.txt"))
    ap.add_argument("--vocab", type=int, default=8192, help="BPE vocabulary size trained (default 8192)")
    ap.add_argument("--rounds", type=int, default=5, help="alternate both sides this many times, keep the best")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    args = ap.parse_args()

    with open(args.corpus, encoding="utf-8") as f:
        text = f.read()
    tok = train_gpt2_style(text, args.vocab)
    work = tempfile.mkdtemp(prefix="lorafast_tokbench_")
    tokenizer_path = os.path.join(work, "tokenizer.json")
    tok.save(tokenizer_path)

    want = tok.encode(text, add_special_tokens=False).ids
    got, _ = lorafast_encode(args.lorafast, tokenizer_path, args.corpus)
    if got != want:
        first = next(i for i, (a, b) in enumerate(zip(got + [-1], want + [-1])) if a != b)
        sys.exit("ids differ from the library's at position %d: the benchmark measures nothing" % first)

    best_lf = best_hf = float("inf")
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        tok.encode(text, add_special_tokens=False)
        best_hf = min(best_hf, time.perf_counter() - t0)
        best_lf = min(best_lf, lorafast_encode(args.lorafast, tokenizer_path, args.corpus)[1])

    n = len(want)
    row = {"corpus": os.path.basename(args.corpus), "bytes": len(text.encode()), "vocab": tok.get_vocab_size(),
           "tokens": n, "lorafast_s": "%.4f" % best_lf, "hf_s": "%.4f" % best_hf,
           "lorafast_tokens_per_s": "%.0f" % (n / best_lf), "hf_tokens_per_s": "%.0f" % (n / best_hf),
           "ratio": "%.2f" % (best_hf / best_lf), "load_average_1min": "%.2f" % os.getloadavg()[0]}
    os.makedirs(args.out_dir, exist_ok=True)
    out = os.path.join(args.out_dir, "tokenizer_vs_hf.csv")
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerow(row)
    print("%s: %d bytes -> %d tokens (vocab %d), best of %d, single-threaded" %
          (row["corpus"], row["bytes"], n, row["vocab"], args.rounds))
    print("  lorafast   %.4f s  %12s tokens/s" % (best_lf, row["lorafast_tokens_per_s"]))
    print("  tokenizers %.4f s  %12s tokens/s" % (best_hf, row["hf_tokens_per_s"]))
    print("  ratio (lorafast / tokenizers throughput): %sx; 1-min load average %s" %
          (row["ratio"], row["load_average_1min"]))
    print("wrote", out)


if __name__ == "__main__":
    main()
