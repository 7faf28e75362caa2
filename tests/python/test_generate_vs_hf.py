"""`lorafast generate --greedy` (KV-cache decoding) against transformers' own
`model.generate(do_sample=False)`: tiny random GPT-2, Llama (grouped-query heads),
Qwen2 (q/k/v biases) and, with sliding windows far shorter than prompt + 40 tokens,
Mistral (every layer) and Qwen2 (layers from max_window_layers on) models written by transformers' save_pretrained (in a
temporary directory, no hub access), with and without a PEFT adapter (B != 0),
byte-level models through --prompt and a 300-token vocabulary through --prompt-ids
(ids printed one per line); an eos_token_id in config.json stops both at the same
token; bad arguments exit 2 with one `lorafast: error:` line.

Tolerance model (DESIGN.md rule 5): token ids are compared exactly.
- f64 (`--dtype f64` vs the oracle of test_llama_interop.py: transformers' code in
  IEEE double): logits agree to ~1e-15, far below any greedy margin that is not an
  exact tie, so the ids must be equal.
- f32 (both sides in float32): logits differ by ~1e-6 of their scale
  (test_cached_decoder.cpp measures it), so a greedy path is compared only when its
  smallest top-1 / top-2 margin (from the f64 oracle) is >= 1e-3, 1000x that; the
  prompt is re-drawn until one is (the chosen margin is printed).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers
import peft

from test_llama_interop import build, check, failures, float64_transformers, load_oracle, peft_targets

torch.set_num_threads(1)
NEW = 40          # tokens generated
MIN_MARGIN = 1e-3


def lf_generate(lf, model_dir, prompt, dtype, vocab, adapter=None, extra=()):
    args = [lf, "generate", "--model", model_dir, "--tokens", str(NEW), "--greedy", "--no-echo", "--threads", "2",
            "--dtype", dtype]
    if vocab == 256:
        args += ["--prompt", bytes(prompt)]  # argv bytes as they are (no text encoding)
    else:
        args += ["--prompt-ids", ",".join(map(str, prompt))]
    if adapter:
        args += ["--adapter", adapter]
    p = subprocess.run(args + list(extra), capture_output=True, timeout=300,
                       env=dict(os.environ, LC_ALL="C"))
    if p.returncode != 0:
        raise AssertionError("%s: exit %d\n%s" % (" ".join(args), p.returncode, p.stderr.decode()))
    return list(p.stdout) if vocab == 256 else [int(x) for x in p.stdout.split()]


def hf_greedy(model, prompt, f64, eos=None):
    """New ids and the smallest top-1 / top-2 logit margin along the path."""
    kw = dict(max_new_tokens=NEW, do_sample=False, pad_token_id=0, output_scores=True, return_dict_in_generate=True)
    if eos is not None:
        kw["eos_token_id"] = eos
    with torch.no_grad():
        if f64:
            with float64_transformers():
                out = model.generate(torch.tensor([prompt]), **kw)
        else:
            out = model.generate(torch.tensor([prompt]), **kw)
    ids = out.sequences[0, len(prompt):].tolist()
    margins = [float((lambda t: t[0] - t[1])(torch.topk(s[0], 2).values)) for s in out.scores]
    return ids, min(margins)


def prompt_of(rng, vocab, eos):
    """An 8-token prompt without eos ids (for vocab 256 raw argv bytes: no NUL)."""
    while True:
        p = [int(x) for x in rng.integers(1 if vocab == 256 else 0, vocab, 8)]
        if not set(p) & set(eos):
            return p


def eos_ids(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        e = json.load(f).get("eos_token_id")
    return [] if e is None else (e if isinstance(e, list) else [e])


def one_model(lf, tmp, name, kind, vocab=256, **overrides):
    d = os.path.join(tmp, name)
    model, cls = build(kind, seed=len(name), **overrides)
    if vocab != 256:
        model.resize_token_embeddings(vocab)
        model.config.vocab_size = vocab
    model.save_pretrained(d)
    oracle = load_oracle(cls, d)
    eos = eos_ids(d)
    rng = np.random.default_rng(len(name))

    # f64, base model; a prompt whose path runs >= 3 tokens before any default eos.
    for attempt in range(8):
        prompt = prompt_of(rng, vocab, eos)
        want, margin = hf_greedy(oracle, prompt, f64=True)
        if len(want) >= 3:
            break
    got = lf_generate(lf, d, prompt, "f64", vocab)
    check(got == want, "%s f64 greedy: %d ids equal transformers' (min margin %.2e)%s"
          % (name, len(want), margin, "" if got == want else "\n  ours   %s\n  theirs %s" % (got, want)))

    # f32: a prompt whose greedy path has margins >= MIN_MARGIN everywhere.
    for attempt in range(8):
        prompt32 = prompt_of(rng, vocab, eos)
        _, margin = hf_greedy(oracle, prompt32, f64=True)
        if margin >= MIN_MARGIN:
            break
    check(margin >= MIN_MARGIN, "%s f32: found a prompt with margin %.2e >= %g" % (name, margin, MIN_MARGIN))
    model32 = cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    want32, _ = hf_greedy(model32, prompt32, f64=False)
    got32 = lf_generate(lf, d, prompt32, "f32", vocab)
    check(got32 == want32, "%s f32 greedy: %d ids equal transformers' (margin %.2e)" % (name, len(want32), margin))

    # An eos id from config.json: the third generated token of the f64 path stops both.
    stop = want[2]
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    c["eos_token_id"] = stop
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f)
    want_eos, _ = hf_greedy(oracle, prompt, f64=True, eos=stop)
    got_eos = lf_generate(lf, d, prompt, "f64", vocab)
    check(got_eos == want_eos and got_eos[-1] == stop and len(got_eos) <= 3,
          "%s eos %d: stops after %d ids as transformers" % (name, stop, len(got_eos)))
    c["eos_token_id"] = eos[0] if len(eos) == 1 else (eos or None)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f)

    # A PEFT adapter with B != 0, f64; scaling alpha / r = 16 so that it moves the
    # greedy path even of GPT-2, whose N(0, 1) tied embeddings give margins of ~5.
    torch.manual_seed(1)
    cfg = peft.LoraConfig(r=4, lora_alpha=64, target_modules=peft_targets(kind), init_lora_weights=False,
                          lora_dropout=0.0)
    pm = peft.get_peft_model(load_oracle(cls, d), cfg).eval()
    adir = os.path.join(tmp, name + "-peft")
    pm.save_pretrained(adir)
    want_a, margin_a = hf_greedy(pm, prompt, f64=True)
    got_a = lf_generate(lf, d, prompt, "f64", vocab, adapter=adir)
    check(got_a == want_a and want_a != want, "%s f64 greedy with a PEFT adapter: %d ids equal PEFT's "
          "(min margin %.2e; the adapter changes them)%s" % (name, len(want_a), margin_a, "" if got_a == want_a else
                                                  "\n  ours   %s\n  theirs %s\n  base   %s" % (got_a, want_a, want)))
    return d


def bad_arguments(lf, model_dir):
    cases = [(["--prompt", "ab", "--tokens", "100"], "positions"),  # 2 + 99 > max_position_embeddings 64
             (["--prompt", "ab", "--top-p", "1.5"], "--top-p"),
             (["--prompt", "ab", "--top-p", "0"], "--top-p"),
             (["--prompt-ids", "1,x"], "--prompt-ids"),
             (["--prompt-ids", "1,256"], "vocabulary"),
             (["--prompt-ids", ","], "--prompt-ids"),
             (["--prompt", "ab", "--prompt-ids", "1"], "excludes"),
             ([], "--prompt"),
             (["--prompt", "ab", "--tokens", "-1"], "--tokens")]
    for args, needle in cases:
        p = subprocess.run([lf, "generate", "--model", model_dir] + args, capture_output=True, text=True, timeout=60)
        lines = p.stderr.strip().splitlines()
        check(p.returncode == 2 and len(lines) == 1 and needle in lines[0] and p.stdout == "",
              "generate %s: exit %d, %r" % (" ".join(args), p.returncode, p.stderr.strip()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorafast", required=True)
    lf = ap.parse_args().lorafast
    print("transformers %s, peft %s, torch %s" % (transformers.__version__, peft.__version__, torch.__version__))
    with tempfile.TemporaryDirectory() as tmp:
        one_model(lf, tmp, "gpt2", "gpt2")
        llama = one_model(lf, tmp, "llama-gqa", "llama", tie_word_embeddings=False)
        one_model(lf, tmp, "qwen2-biases", "qwen2")
        one_model(lf, tmp, "mistral-window7", "mistral", sliding_window=7)
        one_model(lf, tmp, "qwen2-window5-layer1", "qwen2", use_sliding_window=True, sliding_window=5,
                  max_window_layers=1)
        one_model(lf, tmp, "llama-vocab300", "llama", vocab=300)
        bad_arguments(lf, llama)
    if failures:
        print("%d failure(s)" % len(failures))
        sys.exit(1)
    print("all ok")


if __name__ == "__main__":
    main()
