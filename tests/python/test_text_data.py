"""Text in and out through the model directory's tokenizer.json (INTERFACE.md
"Tokenizers and generation"): `lorafast eval` on a text file equals transformers' loss
on the ids the tokenizers library gives the same text; `finetune` caches the ids
beside its output, reusing them while the text and tokenizer are unchanged; and
`generate --greedy` with a text prompt prints the tokenizers library's decoding of
transformers' `generate(do_sample=False)` ids, the prompt included.

Tolerance: float64 loss within 1e-10 relative, as the other transformers oracles: the
same computation in IEEE double up to summation order (~1e-15); a single wrong token
id changes the loss by far more.
"""

import argparse
import json
import os
import struct
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

import test_llama_interop as interop  # noqa: E402
from test_llama_interop import T, check, load_oracle, oracle_loss, run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_model_dir(d, text):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([text], trainers.BpeTrainer(vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=tok.get_vocab_size(), n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                     resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    transformers.GPT2LMHeadModel(config).save_pretrained(d)
    tok.save(os.path.join(d, "tokenizer.json"))
    return tok


def cached_ids(path):
    with open(path, "rb") as f:
        blob = f.read()
    check(blob[:8] == b"LFTOKID1", "cache magic")
    count = struct.unpack_from("<Q", blob, 16)[0]
    return list(struct.unpack_from("<%dI" % count, blob, 24))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorafast", required=True)
    lf = ap.parse_args().lorafast
    with open(os.path.join(ROOT, "data", "lora_and_adam.txt"), encoding="utf-8") as f:
        text = f.read() + "\nnaïve café — 中文 🙂\n"
    with tempfile.TemporaryDirectory() as d:
        model_dir, data = os.path.join(d, "model"), os.path.join(d, "text.txt")
        tok = make_model_dir(model_dir, text)
        with open(data, "w", encoding="utf-8") as f:
            f.write(text)
        ids = tok.encode(text).ids

        got = json.loads(run(lf, "eval", "--model", model_dir, "--data", data, "--seq-len", T, "--dtype", "f64",
                             "--json").stdout)
        model = load_oracle(transformers.GPT2LMHeadModel, model_dir)
        with torch.no_grad():
            want = oracle_loss(model, ids)
        check(got["tokens"] == (len(ids) - 1) // T * T, "eval counts the tokenizer's tokens: %d" % got["tokens"])
        check(abs(got["loss"] - want) <= 1e-10 * abs(want), "eval loss %.15g vs transformers %.15g" % (got["loss"], want))

        out = os.path.join(d, "out")
        ft = ["finetune", "--model", model_dir, "--data", data, "--out", out, "--steps", 2, "--seq-len", T,
              "--eval-every", 0, "--threads", 1]
        run(lf, *ft)
        cache = os.path.join(out, "data_tokens.bin")
        check(cached_ids(cache) == ids, "finetune caches the tokenizer's ids")
        inode = os.stat(cache).st_ino
        run(lf, *ft)
        check(os.stat(cache).st_ino == inode, "a second run reads the cache instead of rewriting it")
        # The same tokenizer in different bytes: another fingerprint, so the cache is rewritten.
        path = os.path.join(model_dir, "tokenizer.json")
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(spec, f, indent=1)
        run(lf, *ft)
        check(os.stat(cache).st_ino != inode and cached_ids(cache) == ids, "a changed tokenizer file re-tokenizes")
        # Explicit id formats still read ids, not text.
        ids_path = os.path.join(d, "ids.bin")
        with open(ids_path, "wb") as f:
            f.write(struct.pack("<%di" % len(ids), *ids))
        by_ids = json.loads(run(lf, "eval", "--model", model_dir, "--data", ids_path, "--data-format", "int32",
                                "--seq-len", T, "--dtype", "f64", "--json").stdout)
        check(by_ids == got, "--data-format int32 of the same ids gives the same result")

        # Greedy generation in float64 (no argmax ties by rounding), from a text prompt
        # with a multi-byte character, so the output streams through held-back UTF-8.
        prompt, new = "naïve LoRA ", 40
        prompt_ids = tok.encode(prompt).ids
        with torch.no_grad():
            want_ids = model.generate(torch.tensor([prompt_ids]), do_sample=False, max_new_tokens=new,
                                      min_new_tokens=new, pad_token_id=0)[0].tolist()
        out = run(lf, "generate", "--model", model_dir, "--prompt", prompt, "--tokens", new, "--greedy",
                  "--dtype", "f64").stdout.encode("utf-8", "surrogateescape")
        want = tok.decode(want_ids, skip_special_tokens=False).encode("utf-8")
        check(out == want, "generate prints the decoded greedy ids:\n%r\n%r" % (out, want))
    print("%d failed" % len(interop.failures))
    return 1 if interop.failures else 0


if __name__ == "__main__":
    sys.exit(main())
