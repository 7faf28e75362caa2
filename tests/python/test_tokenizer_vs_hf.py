"""`lorafast tokenize` against the Hugging Face tokenizers library (the oracle).

Each tokenizer is built and trained here by the library itself on the bundled corpus
and saved as tokenizer.json: GPT-2 style byte-level BPE; Llama-2 style byte_fallback
BPE (Prepend + Replace normalizers, and a Metaspace variant with NFC); the byte-level
one with added tokens (special, normalized, lstrip/rstrip, single_word); Split with
the Llama 3 and the Qwen2 patterns; Split behaviours with a subword prefix; the
whitespace pre-tokenizers with NFD + StripAccents and no decoder. On a corpus of English, code, numbers, whitespace
runs, CJK, Arabic, emoji sequences, combining marks and invalid UTF-8, the ids of
`lorafast tokenize` must equal the library's encode(text, add_special_tokens=False) of
the bytes decoded with errors="replace", and `--decode` must print exactly the
library's decode(ids, skip_special_tokens=False). Hostile tokenizer files must exit 3
with one line on stderr naming the file.
"""

import json
import os
import random
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers  # noqa: E402
from tokenizers import AddedToken  # noqa: E402

import lfcase  # noqa: E402
from lfcase import check  # noqa: E402

harness = lfcase.Harness(__doc__)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "data")
WORK = tempfile.mkdtemp(prefix="lorafast_tok_")

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Texts as bytes: each is encoded alone, and all of them joined once.
TEXTS = [
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n",
    "Hello, world! It's a test; they're here, we've been, I'm sure you'll see, he'd go. DON'T SHOUT'S",
    "def f(x):\n\treturn {'a': [1, 2, 3]} if x else None  # comment\n    print(f\"{x!r:>10}\")\n",
    "3.14159 2718281828 1,000,000 -42 +7e-10 0x1F 12345678901234567890 ١٢٣ ½",
    "   leading spaces, trailing spaces   \n\n\n\t\ttabs\t \t and   runs      \r\n\r\nend  ",
    " ", "\n", "\t\t", "a", "",
    "日本語のテキストです。東京は大きい。中文测试，你好世界！한국어 텍스트",
    "مرحبا بالعالم، هذا اختبار. שלום עולם",
    "emoji 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇫🇷 🧑🏿‍🚀 and more 😀😀😀",
    "combining: e\u0301 vs \u00e9, A\u030a vs \u00c5, n\u0303o, \u1e9b\u0323, Hangul \u1100\u1161\u11a8",
    "nbsp\u00a0here, ideographic\u3000space, nel\u0085line, zero\u200bwidth, em\u2003space",
    "<|endoftext|>The start<|im_start|>user\nhello world<|im_end|> <mask>  cat concat cat.",
    "<s>Hello</s> world <s> again</s>\n<unk> aaaa bbbbbb eeee",
    "ſ 's 'S 'Ll ǅ ß ẞ İstanbul ΣΑΣ ﬁ ℌ ① ｆｕｌｌ",
]
INVALID = [
    b"bad \xff byte", b"\xc3\x28 overlong \xc0\xaf and \xe0\x80\xaf", b"truncated \xe6\x97", b"\xf0\x9f\x98",
    b"surrogate \xed\xa0\x80 end", b"\xf4\x90\x80\x80 beyond", b"mixed \x80\x80\xbf ok \xe2\x82\xac",
]
CORPUS = [t.encode("utf-8") for t in TEXTS] + INVALID
CORPUS.append(b"".join(CORPUS))


def corpus_text(limit):
    with open(os.path.join(DATA, "tinyshakespeare.txt"), encoding="utf-8") as f:
        text = f.read(limit)
    with open(os.path.join(DATA, "lora_and_adam.txt"), encoding="utf-8") as f:
        return text + f.read()


TRAIN = corpus_text(300_000)
TRAIN_LINES = TRAIN.splitlines(keepends=True)


def save(tok, name):
    path = os.path.join(WORK, name + ".json")
    tok.save(path)
    return path


def byte_level_bpe(vocab=2000, special=("<|endoftext|>",)):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TRAIN_LINES, trainers.BpeTrainer(
        vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=list(special),
        show_progress=False))
    return tok


def llama2_like(metaspace):
    """byte_fallback BPE with <0xNN> tokens in the model vocabulary (as Llama 2's
    conversion has them): trained, then re-numbered with the byte tokens in front."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    if metaspace:
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    else:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.train_from_iterator(TRAIN_LINES, trainers.BpeTrainer(
        vocab_size=1200, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=80, show_progress=False))
    doc = json.loads(tok.to_str())
    trained = sorted(doc["model"]["vocab"].items(), key=lambda kv: kv[1])
    names = [k for k, _ in trained[:3]] + ["<0x%02X>" % b for b in range(256)] + [k for k, _ in trained[3:]]
    doc["model"]["vocab"] = {k: i for i, k in enumerate(names)}
    for t in doc["added_tokens"]:
        t["id"] = doc["model"]["vocab"][t["content"]]
    if metaspace:
        doc["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                                       "split": True}, {"type": "Fuse"}]}
    else:
        doc["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    return Tokenizer.from_str(json.dumps(doc))


def with_added_tokens():
    tok = byte_level_bpe(special=())
    tok.normalizer = normalizers.Sequence([normalizers.NFC()])
    tok.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.add_tokens([AddedToken("hello world", normalized=True), AddedToken("<mask>", lstrip=True, rstrip=True),
                    AddedToken("cat", single_word=True), AddedToken("\u00e9t\u00e9", normalized=True)])
    return tok


def split_regex(pattern, nfc):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TRAIN_LINES, trainers.BpeTrainer(
        vocab_size=1500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<|begin_of_text|>"],
        show_progress=False))
    return tok


def split_behaviors():
    """Split behaviours, invert, Digits, Punctuation, Metaspace without a prefix:
    one pre-tokenizer sequence over a byte-level model with a subword prefix."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\s+"), behavior="merged_with_next"),
        pre_tokenizers.Split(",", behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"[aeiou]+"), behavior="contiguous", invert=True),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Punctuation(behavior="isolated"),
        pre_tokenizers.Split(";", behavior="removed")])
    tok.decoder = decoders.BPEDecoder(suffix="##")
    tok.train_from_iterator(TRAIN_LINES, trainers.BpeTrainer(
        vocab_size=800, special_tokens=["[UNK]"], continuing_subword_prefix="##", show_progress=False))
    return tok


def whitespace_splits():
    """NFD + StripAccents + Strip normalizers, the whitespace and delimiter
    pre-tokenizers, unk for unseen characters, and no decoder (tokens joined by spaces)."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.Strip()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Whitespace(), pre_tokenizers.CharDelimiterSplit("x")])
    tok.train_from_iterator(TRAIN_LINES, trainers.BpeTrainer(vocab_size=600, special_tokens=["[UNK]"],
                                                             show_progress=False))
    return tok


TOKENIZERS = {}


def tokenizer(name):
    """(library Tokenizer, tokenizer.json path), built on first use."""
    if name not in TOKENIZERS:
        build = {
            "gpt2": lambda: byte_level_bpe(),
            "llama2": lambda: llama2_like(metaspace=False),
            "metaspace": lambda: llama2_like(metaspace=True),
            "added": with_added_tokens,
            "llama3": lambda: split_regex(LLAMA3_PATTERN, nfc=False),
            "qwen2": lambda: split_regex(QWEN2_PATTERN, nfc=True),
            "behaviors": split_behaviors,
            "whitespace": whitespace_splits,
        }[name]
        tok = build()
        TOKENIZERS[name] = (tok, save(tok, name))
    return TOKENIZERS[name]


def write(name, data):
    path = os.path.join(WORK, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def lorafast(binary, args):
    proc = subprocess.run([binary, "tokenize"] + args, capture_output=True, timeout=120)
    check(proc.returncode == 0, "tokenize %s: exit %d: %s" % (" ".join(args), proc.returncode,
                                                              proc.stderr.decode(errors="replace")))
    return proc.stdout


def compare(binary, name):
    tok, path = tokenizer(name)
    mismatches = []
    for i, raw in enumerate(CORPUS):
        text = raw.decode("utf-8", errors="replace")
        want = tok.encode(text, add_special_tokens=False).ids
        out = lorafast(binary, ["--tokenizer", path, "--in", write("%s_%d.txt" % (name, i), raw)])
        got = [int(x) for x in out.split()]
        if got != want:
            mismatches.append("text %d %r: lorafast %s, library %s" % (i, text[:60], got[:40], want[:40]))
            continue
        want_text = tok.decode(want, skip_special_tokens=False).encode("utf-8")
        got_text = lorafast(binary, ["--tokenizer", path, "--decode", "--in",
                                     write("%s_%d.ids" % (name, i), "".join("%d\n" % t for t in want).encode())])
        if got_text != want_text:
            mismatches.append("decode of text %d: lorafast %r, library %r" % (i, got_text[:80], want_text[:80]))
    # Random id sequences: partial UTF-8 in byte-level tokens, byte runs, special tokens.
    rng = random.Random(0)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    for trial in range(20):
        ids = [rng.randrange(vocab) for _ in range(rng.randrange(1, 30))]
        want_text = tok.decode(ids, skip_special_tokens=False).encode("utf-8")
        got_text = lorafast(binary, ["--tokenizer", path, "--decode", "--in",
                                     write("%s_r%d.json" % (name, trial), json.dumps({"ids": ids}).encode())])
        if got_text != want_text:
            mismatches.append("decode of %s: lorafast %r, library %r" % (ids, got_text[:80], want_text[:80]))
    check(not mismatches, "%d mismatches:\n  %s" % (len(mismatches), "\n  ".join(mismatches[:8])))
    return "%d texts, %d random id lists identical" % (len(CORPUS), 20)


for _name in ["gpt2", "llama2", "metaspace", "added", "llama3", "qwen2", "behaviors", "whitespace"]:
    harness.add("identical_" + _name, lambda binary, n=_name: compare(binary, n))


@harness.test
def json_output_and_model_dir(binary):
    tok, path = tokenizer("added")
    model = os.path.join(WORK, "model")
    os.makedirs(model, exist_ok=True)
    with open(path, "rb") as f:
        write("model/tokenizer.json", f.read())
    write("model/tokenizer_config.json", json.dumps({"bos_token": "<|im_start|>", "eos_token": {
        "content": "<|endoftext|>", "__type": "AddedToken"}}).encode())
    raw = CORPUS[-1]
    want = tok.encode(raw.decode("utf-8", errors="replace"), add_special_tokens=False).ids
    out = json.loads(lorafast(binary, ["--model", model, "--in", write("all.txt", raw), "--json"]))
    check(out == {"ids": want}, "--json output differs from the library")


def expect_exit(binary, args, code, name):
    proc = subprocess.run([binary, "tokenize"] + args, capture_output=True, timeout=60)
    text = proc.stderr.decode("utf-8", "replace")
    check(proc.returncode == code, "%s: exit %d (want %d): %r" % (" ".join(args), proc.returncode, code, text))
    check(text.startswith("lorafast: error:") and text.count("\n") == 1, "stderr is not one line: %r" % text[:300])
    check(name in text, "stderr %r does not name %s" % (text, name))


def hostile_variants(doc):
    """(name, tokenizer.json bytes) of broken variants of a valid tokenizer."""
    def edited(fn):
        d = json.loads(json.dumps(doc))
        fn(d)
        return json.dumps(d).encode()
    first_merge = doc["model"]["merges"][0]
    yield "unknown_model", edited(lambda d: d["model"].update(type="Unigram"))
    yield "merge_unknown_token", edited(lambda d: d["model"]["merges"].insert(0, ["zzq", "qzz"]))
    yield "merged_not_in_vocab", edited(lambda d: d["model"]["vocab"].pop("".join(first_merge)))
    yield "bad_regex", edited(lambda d: d.update(pre_tokenizer={
        "type": "Split", "pattern": {"Regex": "(unclosed[a-"}, "behavior": "Isolated", "invert": False}))
    yield "unknown_pre_tokenizer", edited(lambda d: d.update(pre_tokenizer={"type": "Quantum"}))
    yield "missing_vocab", edited(lambda d: d["model"].pop("vocab"))
    yield "huge_id", edited(lambda d: d["model"]["vocab"].update({"zzz": 1 << 40}))
    yield "sparse_ids", edited(lambda d: d["model"]["vocab"].update({"zzz": (1 << 24) - 2}))
    yield "duplicate_id", edited(lambda d: d["model"]["vocab"].update({"zzz": 5}))
    yield "negative_id", edited(lambda d: d["model"]["vocab"].update({"zzz": -1}))
    yield "added_id_mismatch", edited(lambda d: d["added_tokens"].append({
        "id": 3, "content": "<new>", "special": True, "normalized": False}))
    yield "merge_one_part", edited(lambda d: d["model"].update(merges=["abc"]))
    yield "dropout", edited(lambda d: d["model"].update(dropout=0.1))
    yield "wrong_types", edited(lambda d: d.update(decoder={"type": "Strip", "content": "ab", "start": 1, "stop": 0}))
    yield "deep", b"[" * 100_000 + b"]" * 100_000
    yield "not_json", b"{\"model\": "
    yield "duplicate_key", b"{\"model\": {}, \"model\": {}}"
    yield "empty", b""


@harness.test
def hostile_tokenizer_files(binary):
    tok, path = tokenizer("gpt2")
    doc = json.loads(tok.to_str())
    text = write("hostile.txt", b"hello world")
    count = 0
    for name, data in hostile_variants(doc):
        bad = write("hostile_%s.json" % name, data)
        expect_exit(binary, ["--tokenizer", bad, "--in", text], 3, "hostile_%s.json" % name)
        count += 1
    return "%d files" % count


@harness.test
def bad_ids_and_usage(binary):
    _, path = tokenizer("gpt2")
    size = tokenizer("gpt2")[0].get_vocab_size(with_added_tokens=True)
    for name, data in [("range.ids", b"1\n%d\n" % size), ("word.ids", b"1\nhello\n"), ("neg.ids", b"-4\n"),
                       ("json.ids", b"{\"ids\": [1, 2.5]}"), ("huge.ids", b"99999999999\n")]:
        expect_exit(binary, ["--tokenizer", path, "--decode", "--in", write(name, data)], 3, name)
    text = write("usage.txt", b"x")
    expect_exit(binary, ["--in", text], 2, "--tokenizer")
    expect_exit(binary, ["--tokenizer", path, "--model", WORK, "--in", text], 2, "--model")
    expect_exit(binary, ["--tokenizer", os.path.join(WORK, "absent.json"), "--in", text], 3, "absent.json")
    expect_exit(binary, ["--tokenizer", path, "--in", os.path.join(WORK, "absent.txt")], 3, "absent.txt")


if __name__ == "__main__":
    sys.exit(harness.main())
