#!/usr/bin/env python3
"""Instruction tuning (issue #32's targets): `lorafast prepare` / `lorafast finetune` on
packed conversations vs TRL's SFTTrainer, same-run ratios on the same data.

Data: --conversations (20,000) synthetic conversations from a seeded generator
(conversations(): {"messages": [...]}, 1 to 4 user/assistant exchanges, a system prompt
in about a third, turn lengths from a few words to long answers, about 5% long enough to
be truncated at --seq-len, some non-ASCII: accents, CJK, Greek, emoji), written once as
conv.jsonl into --work-dir. A byte-level BPE tokenizer.json (vocab_size at most the
model's, so every id fits) is trained on them once with the `tokenizers` library and
cached there, beside TRL's qwen2_5_training.jinja as chat_template.jinja and a
tokenizer_config.json (eos_token "<|im_end|>", pad_token "<pad>"). Loss on every token
(TRL's default for conversations: no assistant_only_loss) on both sides.

1. Preparation (template, tokenize, labels, pack bfd at --seq-len): the wall time of the
   whole `lorafast prepare --model DIR --data conv.jsonl --out OUT --seq-len T --packing
   bfd --threads N` command (process start, reading, writing the rows included) against
   the construction of trl.SFTTrainer(model=<a tiny Llama>, args=SFTConfig(max_length=T,
   packing=True, dataset_num_proc=None, ...), train_dataset=<load_dataset("json") of the
   JSONL>, processing_class=<the tokenizer>) in one process (bench/trl_sft_side.py
   prepare): TRL's rendering, tokenization, packing and Trainer's setup, with a fresh
   datasets cache per round and caching disabled; the imports, tokenizer and model
   loading are not timed, and loading the JSONL into the Dataset is reported on its own
   (`load_seconds` in the JSON), not in the ratio. Before any speed is reported both sides' packed
   rows must be equal (input_ids, labels, seq_lengths, as
   tests/python/test_sft_packing_vs_trl.py checks). Padding share: 1 - real tokens /
   (rows * T) over lorafast's rows of the whole set.
2. Packed SFT training throughput: the Llama-shaped 100M model of
   llama_train_vs_torch.py (its make_inputs: 12 layers, hidden 768, 12/4 heads,
   intermediate 2048, vocab 32000, tied embeddings) with the tokenizer files beside it,
   LoRA r=16 alpha 16 on q_proj k_proj v_proj o_proj, AdamW, constant learning rate
   2e-4, clip 1, batches of --batch packed rows of --seq-len. lorafast: `finetune
   --packing bfd --dtype f32|bf16` (tokens/s from train_log.csv: its `tokens` column
   counts real, non-padding tokens, over `step_seconds`). TRL: SFTTrainer with
   packing=True (bfd: padding-free batches, its default), peft_config, attn
   sdpa and eager, gradient_checkpointing off (--gradient-checkpointing adds sdpa sides
   with it on), in f32 (bf16=False), under bf16 autocast (bf16=True) and loaded in bf16
   (dtype=torch.bfloat16, bf16=True) (bench/trl_sft_side.py train, on the rows TRL's own
   preparation wrote); tokens/s = real tokens (the padding-free batch's length: the sum
   of the rows' seq_lengths) over the time between on_step_begin and on_step_end of a
   TrainerCallback (forward, loss, backward, clip, AdamW, scheduler; Trainer fetches
   and collates the batch before on_step_begin, so that is not timed). Both sides: the first --warmup updates untimed, tokens/s = timed
   tokens / timed seconds, best of --rounds rounds, one process per side and round
   (peak RSS from GNU time, the load average sampled during it), --threads threads
   (lorafast --threads, torch.set_num_threads), OMP_WAIT_POLICY=passive. Reported per
   precision class (f32; bf16 = lorafast --dtype bf16 against TRL autocast and bf16
   weights): lorafast tokens/s over the fastest TRL side of the same class.

Correctness gate before any timing (gate()): on the --quick model, the first
GATE_CONVERSATIONS (24) quick conversations prepared by both sides (rows equal), then
every training side run for two steps with a batch holding every packed row, so step
1 (LoRA B = 0: the base model) sees the same rows everywhere: the f32 sides' step-1
losses must agree with lorafast f32's within LOSS_AGREEMENT (1e-5 relative; it says
why), the bf16 sides' within gpt_train_vs_torch.LOSS_AGREEMENT_BF16, and every side
must count the rows' real tokens in that step. (Only 24 conversations: TRL's
padding-free batch of every row is one sequence, and attention's memory is quadratic in
its length; gate() has the numbers.) lorafast runs `finetune --method exact
--val-fraction 0 --lr 2e-4 --warmup 0 --min-lr-ratio 1` (exact attention, every row
trains, the constant learning rate TRL is given) in the gate and the timed runs.

--quick: the tiny Llama of llama_train_vs_torch.py --quick (2 layers, hidden 64,
4/2 heads, vocab 512; positions 128), 200 conversations at T=128 for the preparation
sides; the training sides are the gate's (two steps, one timed, on the batch of every
row of 24 conversations; TRL's sides in one process to pay its imports once). A smoke
test: every side runs and the outputs are written; the timings mean nothing.

Writes bench/results/sft_vs_trl.{csv,json,png} (tokens/s per side and precision, and
the preparation speedup) and prints markdown tables.

    python3 bench/sft_vs_trl.py              # 20,000 conversations, the 100M Llama, T=1024, 2 threads, 3 rounds
    python3 bench/sft_vs_trl.py --quick      # a tiny model, 200 conversations, T=128, 2 steps (smoke test, ~1 min)
    python3 bench/sft_vs_trl.py --gradient-checkpointing   # also TRL sdpa with gradient checkpointing
    python3 bench/sft_vs_trl.py --replot     # redraw the PNG from the JSON
"""
import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gpt_train_vs_torch as gptbench  # noqa: E402
import lfbench  # noqa: E402
import llama_train_vs_torch as llamabench  # noqa: E402

NAME = "sft_vs_trl"
TRL_SIDE = HERE / "trl_sft_side.py"
EOS = "<|im_end|>"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
# Step 1 trains from LoRA B = 0, so its loss is the base model's on the same rows; with a
# batch holding every packed row, row order (TRL's sampler shuffles, lorafast's epoch
# order is its own) only changes the order in which the same per-token losses are
# summed. f32 on both sides, so the sides differ by summation order (and the kernels'
# own f32 rounding): measured 4.2e-9 relative (TRL sdpa and eager f32 against lorafast
# f32, the gate's 23 rows, 2692 tokens); 1e-5 leaves room for other machines' kernels
# and is still far below what a wrong row, label or document mask would change.
LOSS_AGREEMENT = 1e-5
GATE_CONVERSATIONS = 24  # the gate's batch of every row: gate() says why so few
COLUMNS = ["section", "side", "precision", "tokens_per_s", "seconds", "ratio", "timed_steps", "timed_tokens",
           "batch", "seq_len", "threads", "process_s", "peak_rss_mb", "step1_loss", "loadavg_during", "note"]

# ---------------------------------------------------------------- data

ASCII_WORDS = ("the of and to in is it that for on with as was at by be this from or an are not have which but all "
               "when can will one about more there their would so what up out if into time only also how then two "
               "first way new because may over after most where much through between both under model train data "
               "answer question value number list function return string python matrix gradient token layer loss "
               "adapter rank memory thread kernel cache window packing example batch step rate").split()
OTHER_WORDS = ["Grüße", "naïve", "café", "Ça", "très", "日本語", "東京", "模型", "Ελληνικά", "λόγος", "✓", "—", "😀",
               "→", "€5", "Straße", "œuvre", "Привет", "мир", "½"]
SYSTEM_PROMPTS = ["You are a helpful assistant.", "You are terse.", "Answer in one paragraph.",
                  "You are a careful tutor. Explain step by step.", "Réponds en français.", "日本語で答えてください。"]


def sentence(rng, words):
    out = []
    for _ in range(words):
        w = rng.choice(OTHER_WORDS) if rng.random() < 0.04 else rng.choice(ASCII_WORDS)
        out.append(w)
    text = " ".join(out)
    if rng.random() < 0.1:
        text += "\n\n" + "- " + " ".join(rng.choice(ASCII_WORDS) for _ in range(rng.randint(2, 8)))
    if rng.random() < 0.05:
        text += ' "quoted" {"key": [1, 2]}'
    return text.capitalize() + rng.choice([".", "?", "!", ""])


def conversations(n, seed, scale):
    """n deterministic conversations; turn lengths (in words) scale with `scale`
    (seq_len / 1024), so the --quick rows still hold several conversations."""
    rng = random.Random(seed)
    words = lambda lo, hi: max(1, int(rng.randint(lo, hi) * scale))  # noqa: E731
    for _ in range(n):
        messages = []
        if rng.random() < 0.35:
            messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
        long = rng.random() < 0.05
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4])):
            messages.append({"role": "user", "content": sentence(rng, words(3, 60))})
            answer = words(400, 900) if long else words(5, 160) if rng.random() < 0.8 else words(160, 400)
            messages.append({"role": "assistant", "content": sentence(rng, answer)})
        yield {"messages": messages}


def make_data(args, work):
    """conv.jsonl, generated once per (count, seed, scale)."""
    path = work / f"conv_n{args.conversations}_s{args.seed}_T{args.seq_len}" / "conv.jsonl"
    if not path.exists():
        lfbench.progress(f"writing {args.conversations} conversations to {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for c in conversations(args.conversations, args.seed, args.seq_len / 1024):
                f.write(json.dumps(c, ensure_ascii=False) + "\n")
        tmp.rename(path)
    return path


def make_tokenizer(args, data):
    """A byte-level BPE tokenizer.json trained on the conversations (vocab <= the
    model's), TRL's qwen2_5_training.jinja and tokenizer_config.json, cached beside the data."""
    out = data.parent / f"tokenizer_V{args.vocab}"
    if (out / "tokenizer.json").exists():
        return out
    import trl
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    lfbench.progress(f"training a byte-level BPE tokenizer (vocab <= {args.vocab}) into {out}")
    tmp = Path(tempfile.mkdtemp(dir=data.parent))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()

    def texts():
        with open(data, encoding="utf-8") as f:
            for line in f:
                for m in json.loads(line)["messages"]:
                    yield m["content"]
    tok.train_from_iterator(texts(), trainers.BpeTrainer(
        vocab_size=args.vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=SPECIALS,
        show_progress=False))
    tok.save(str(tmp / "tokenizer.json"))
    (tmp / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": EOS, "pad_token": "<pad>", "tokenizer_class": "PreTrainedTokenizerFast"}))
    shutil.copy(Path(trl.__file__).parent / "chat_templates" / "qwen2_5_training.jinja", tmp / "chat_template.jinja")
    tmp.rename(out)
    return out


def make_model(args, work, tokenizer):
    """llama_train_vs_torch.py's model directory, with the tokenizer files beside it (symlinks)."""
    base, _ = llamabench.make_inputs(args, work)
    model = base.parent / f"sft_model_{tokenizer.parent.name}_{tokenizer.name}"
    if not model.exists():
        tmp = Path(tempfile.mkdtemp(dir=base.parent))
        for src in list(base.iterdir()) + list(tokenizer.iterdir()):
            (tmp / src.name).symlink_to(src.resolve())
        tmp.rename(model)
    return model


def read_rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def compare_rows(ours, theirs):
    """None if lorafast's rows equal TRL's (input_ids, labels, seq_lengths), else the first difference."""
    if len(ours) != len(theirs):
        return f"lorafast wrote {len(ours)} rows, TRL {len(theirs)}"
    for i, (o, t) in enumerate(zip(ours, theirs)):
        for col in ("input_ids", "labels", "seq_lengths"):
            if o[col] != t[col]:
                return f"row {i}: {col} differ (lorafast {o[col][:12]}..., TRL {t[col][:12]}...)"
    return None


def padding_share(rows, seq_len):
    return 1 - sum(len(r["input_ids"]) for r in rows) / (len(rows) * seq_len)


# ---------------------------------------------------------------- sides

def env_for(lf):
    env = dict(lf.env, OMP_NUM_THREADS=str(lf.threads))
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    return env


def prepare_round(args, lf, model, data, tiny_model, scratch, tag, keep=True):
    """One round of both preparation sides: {"lorafast": wall seconds of the whole
    command, "trl": the TRL side's JSON, "lorafast_rows"/"trl_rows": the rows files,
    "packed": TRL's saved Dataset}. Each in `scratch`/`tag`; with keep=False (the later
    rounds) TRL's rows are neither dumped nor saved (that is after its timing anyway)."""
    d = scratch / tag
    d.mkdir(parents=True, exist_ok=True)
    out = d / "lorafast_rows.jsonl"
    ours = lf.run(["prepare", "--model", model, "--data", data, "--out", out, "--seq-len", args.seq_len,
                   "--packing", "bfd"], timeout=3600, want_json=False)
    cache = Path(tempfile.mkdtemp(prefix="trl_prep_", dir=d))  # a fresh datasets cache
    dump, save = d / "trl_rows.jsonl", d / "trl_packed"
    cmd = [sys.executable, TRL_SIDE, "prepare", "--model", tiny_model, "--data", data, "--cache-dir", cache,
           "--seq-len", args.seq_len, "--threads", args.threads] + (["--dump", dump, "--save", save] if keep else [])
    stdout, rss, load = gptbench.run_measured(cmd, env_for(lf), d)
    shutil.rmtree(cache, ignore_errors=True)
    return {"lorafast": ours, "trl": dict(json.loads(stdout.strip().splitlines()[-1]), rss_mb=rss, loadavg=load), "lorafast_rows": out,
            "trl_rows": dump, "packed": save}


def check_rows(rnd):
    """lorafast's rows of a preparation round (read), after checking they equal TRL's."""
    rows = read_rows(rnd["lorafast_rows"])
    diff = compare_rows(rows, read_rows(rnd["trl_rows"]))
    if diff:
        sys.exit(f"lorafast prepare and TRL's SFTTrainer packed the conversations differently: {diff}")
    return rows


def lorafast_train(args, lf, model, data, dtype, batch, scratch):
    out = scratch / f"finetune_{dtype}"
    cmd = [args.lorafast, "finetune", "--model", model, "--data", data, "--seq-len", args.seq_len, "--packing", "bfd",
           "--batch", batch, "--steps", args.warmup + args.steps, "--targets", *TARGETS, "--rank", args.rank,
           "--alpha", args.rank, "--lr", 2e-4, "--warmup", 0, "--min-lr-ratio", 1, "--eval-every", 0,
           "--save-every", 0, "--val-fraction", 0, "--dtype", dtype, "--method", "exact", "--seed", args.seed,
           "--out", out, "--threads", args.threads]
    t0 = time.perf_counter()
    _, rss, load = gptbench.run_measured(cmd, env_for(lf), scratch)
    wall = time.perf_counter() - t0  # the whole process: start, reading and packing the JSONL, every step
    lines = (out / "train_log.csv").read_text().splitlines()
    log = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
    return {"seconds": [float(r["step_seconds"]) for r in log], "tokens": [int(r["tokens"]) for r in log],
            "losses": [float(r["loss"]) for r in log], "rss_mb": rss, "loadavg": load, "process_seconds": wall,
            "command": " ".join(map(str, cmd))}


def trl_train(args, lf, model, packed, specs, batch, scratch):
    """TRL sides `specs` in one process (bench/trl_sft_side.py train): a list of runs."""
    cache = Path(tempfile.mkdtemp(prefix="trl_train_", dir=scratch))
    sides = [{"attn": s["attn"], "precision": s["precision"], "gc": bool(s.get("gc"))} for s in specs]
    cmd = [sys.executable, TRL_SIDE, "train", "--model", model, "--packed", packed, "--cache-dir", cache,
           "--seq-len", args.seq_len, "--batch", batch, "--steps", args.warmup + args.steps, "--rank", args.rank,
           "--alpha", args.rank, "--targets", *TARGETS, "--sides", json.dumps(sides), "--seed", args.seed,
           "--threads", args.threads]
    t0 = time.perf_counter()
    try:
        stdout, rss, load = gptbench.run_measured(cmd, env_for(lf), scratch)
    except SystemExit as e:  # a side that fails (e.g. out of memory) is a note, not the end of the run
        msg = str(e).strip().splitlines()
        note = msg[0].split(":")[0] + (": " + msg[-1][:200] if len(msg) > 1 else "")  # "failed (137)": killed
        return [{"failed": note, "command": " ".join(map(str, cmd))}] * len(specs)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    wall = time.perf_counter() - t0
    return [dict(r, rss_mb=rss, loadavg=load, process_seconds=wall, command=" ".join(map(str, cmd)))
            for r in json.loads(stdout.strip().splitlines()[-1])]


def train_sides(gc):
    """{side: spec}: lorafast sides have "dtype", TRL sides "attn", "precision" (and "gc")."""
    out = {"lorafast f32": {"dtype": "f32", "class": "f32"}, "lorafast bf16": {"dtype": "bf16", "class": "bf16"}}
    for precision, label, cls in (("f32", "f32", "f32"), ("autocast", "bf16 autocast", "bf16"),
                                  ("bf16", "bf16 weights", "bf16")):
        for attn in ("sdpa", "eager"):
            out[f"TRL {attn} {label}"] = {"attn": attn, "precision": precision, "class": cls}
        if gc:
            out[f"TRL sdpa {label} grad-ckpt"] = {"attn": "sdpa", "precision": precision, "class": cls, "gc": True}
    return out


def run_training(args, lf, model, data, packed, batch, scratch, sides, one_trl_process=False):
    """{side: [its run in each round]}, one process per side and round; with
    one_trl_process (the --quick smoke test, which would otherwise spend most of its
    time importing torch and TRL) every TRL side of a round runs in one process, whose
    peak RSS is then all of theirs."""
    runs = {side: [] for side in sides}
    trl_sides = [s for s, spec in sides.items() if "dtype" not in spec]
    for r in range(args.rounds):
        for side, spec in sides.items():
            if "dtype" in spec:
                lfbench.progress(f"round {r + 1}/{args.rounds}: {side} (batch {batch})")
                runs[side].append(lorafast_train(args, lf, model, data, spec["dtype"], batch, scratch))
            elif not one_trl_process:
                lfbench.progress(f"round {r + 1}/{args.rounds}: {side} (batch {batch})")
                runs[side] += trl_train(args, lf, model, packed, [spec], batch, scratch)
        if one_trl_process and trl_sides:
            lfbench.progress(f"round {r + 1}/{args.rounds}: {', '.join(trl_sides)} in one process (batch {batch})")
            for side, run in zip(trl_sides, trl_train(args, lf, model, packed, [sides[s] for s in trl_sides], batch,
                                                      scratch)):
                runs[side].append(run)
    return runs


def check_losses(runs, sides):
    """Step-1 losses against lorafast f32: f32 sides within LOSS_AGREEMENT, bf16 sides
    within gpt_train_vs_torch.LOSS_AGREEMENT_BF16. Exits on a mismatch."""
    ok = {s: rs[0] for s, rs in runs.items() if "failed" not in rs[0]}
    step1 = {s: r["losses"][0] for s, r in ok.items()}
    rels = {}
    for cls, bound in (("f32", LOSS_AGREEMENT), ("bf16", gptbench.LOSS_AGREEMENT_BF16)):
        group = {"lorafast f32": step1["lorafast f32"]}
        group.update({s: v for s, v in step1.items() if sides[s]["class"] == cls and s != "lorafast f32"})
        if len(group) > 1:
            rels.update(gptbench.check_step1_losses(group, bound, "lorafast f32"))
    return rels


def timed(args, run):
    """(tokens/s, timed seconds, timed tokens) of one run after its warm-up updates."""
    secs, toks = run["seconds"][args.warmup:], run["tokens"][args.warmup:]
    return sum(toks) / sum(secs), sum(secs), sum(toks)


# ---------------------------------------------------------------- the run

def quick_args(args):
    """The --quick settings applied to a copy of args (the full run's gate uses them)."""
    q = argparse.Namespace(**vars(args))
    q.layers, q.heads, q.kv_heads, q.width, q.intermediate, q.vocab, q.positions = 2, 4, 2, 64, 128, 512, 128
    q.conversations, q.seq_len, q.steps, q.warmup, q.rounds = 200, 128, 1, 1, 1
    return q


def inputs(args, work):
    data = make_data(args, work)
    tokenizer = make_tokenizer(args, data)
    return data, tokenizer, make_model(args, work, tokenizer)


def tiny_model_for(args, work, tokenizer):
    """A tiny Llama (the --quick shape with this run's vocab and positions) with the
    tokenizer files: the `model` TRL's preparation is given, so its setup is not timed
    moving a 100M model."""
    t = quick_args(args)
    t.vocab, t.seq_len, t.positions = args.vocab, args.seq_len, max(args.seq_len, t.positions)
    return make_model(t, work, tokenizer)


def gate(args, lf, work, scratch, sides):
    """The correctness gate on the quick model: the first GATE_CONVERSATIONS of the quick
    set prepared by both sides (rows equal), then every side of `sides` trained for two
    steps with a batch of every packed row (TRL's sides in one process: this is a check,
    not a timing), so step 1 sees the same rows on every side (check_losses); the token
    counts of that step must be the rows' real tokens. TRL's padding-free batch is one
    sequence of all the rows' tokens, and transformers' eager attention (and SDPA's mask)
    takes memory quadratic in it: the 194 rows of all 200 quick conversations (~22k
    tokens) took 22 GB and were killed; GATE_CONVERSATIONS' 2.7k tokens ran every TRL
    side in one process at 1.1 GB peak RSS.
    Returns (runs, step-1 relative differences)."""
    q = quick_args(args)
    data, tokenizer, model = inputs(q, work)
    subset = data.parent / f"gate_{GATE_CONVERSATIONS}.jsonl"
    if not subset.exists():
        subset.write_text("".join(data.read_text(encoding="utf-8").splitlines(keepends=True)[:GATE_CONVERSATIONS]),
                          encoding="utf-8")
    prep = prepare_round(q, lf, model, subset, model, scratch, "gate")
    rows = check_rows(prep)
    runs = run_training(q, lf, model, subset, prep["packed"], len(rows), scratch, sides, one_trl_process=True)
    for s, rs in runs.items():
        if "failed" in rs[0]:
            sys.exit(f"gate: {s} {rs[0]['failed']}\n{rs[0]['command']}")
    real = sum(len(r["input_ids"]) for r in rows)
    for s, rs in runs.items():
        if rs[0]["tokens"][0] != real:
            sys.exit(f"gate: {s} counts {rs[0]['tokens'][0]} tokens in a batch of every row; the rows hold {real}")
    rels = check_losses(runs, sides)
    lfbench.progress(f"gate passed: {len(rows)} rows, {real} tokens")
    return runs, rels


def summary(args, prep_rounds, rows, runs, sides, batch, rels):
    """The CSV rows: the two preparation sides, then one per training side (best round),
    lorafast's rows with their ratio over the fastest TRL side of the same precision."""
    ours = min(r["lorafast"] for r in prep_rounds)
    theirs = min(r["trl"]["seconds"] for r in prep_rounds)
    load = min(r["trl"]["load_seconds"] for r in prep_rounds)
    pad = padding_share(rows, args.seq_len)
    out = [{"section": "prepare", "side": "lorafast prepare", "seconds": ours, "ratio": theirs / ours,
            "seq_len": args.seq_len, "threads": args.threads,
            "note": f"{args.conversations} conversations -> {len(rows)} rows, padding share {100 * pad:.2f}%; "
                    "whole command"},
           {"section": "prepare", "side": "TRL SFTTrainer construction", "seconds": theirs, "seq_len": args.seq_len,
            "threads": args.threads, "peak_rss_mb": max(r["trl"]["rss_mb"] for r in prep_rounds),
            "note": f"one process, fresh datasets cache; load_dataset(json) {load:.2f} s not included"}]
    for side, spec in sides.items():
        ok = [r for r in runs[side] if "failed" not in r]
        if not ok:
            out.append({"section": "train", "side": side, "precision": spec["class"], "batch": batch,
                        "seq_len": args.seq_len, "threads": args.threads, "note": runs[side][0]["failed"]})
            continue
        best = max(ok, key=lambda r: timed(args, r)[0])
        rate, secs, toks = timed(args, best)
        out.append({"section": "train", "side": side, "precision": spec["class"], "tokens_per_s": rate,
                    "seconds": secs, "timed_steps": args.steps, "timed_tokens": toks, "batch": batch,
                    "seq_len": args.seq_len, "threads": args.threads, "process_s": best.get("process_seconds"),
                    "peak_rss_mb": max(r["rss_mb"] for r in ok),
                    "step1_loss": ok[0]["losses"][0], "loadavg_during": max(r["loadavg"] for r in ok),
                    "note": "" if side not in rels else f"gate: step-1 loss within {rels[side]:.1e} of lorafast f32"})
    for cls in ("f32", "bf16"):
        trl_rows = [r for r in out if r["section"] == "train" and r.get("precision") == cls
                    and r["side"].startswith("TRL") and r.get("tokens_per_s")]
        o = next(r for r in out if r["side"] == f"lorafast {cls}")
        if trl_rows and o.get("tokens_per_s"):
            fastest = max(trl_rows, key=lambda r: r["tokens_per_s"])
            o["ratio"] = o["tokens_per_s"] / fastest["tokens_per_s"]
            o["note"] = (o["note"] + "; " if o["note"] else "") + f"ratio over {fastest['side']}"
    return out, pad


def verdicts(rows, pad):
    """The issue #32 targets, one line each."""
    by = {r["side"]: r for r in rows}
    p = by["lorafast prepare"]
    lines = [f"- Preparation: lorafast {p['seconds']:.2f} s, TRL {by['TRL SFTTrainer construction']['seconds']:.2f} s: "
             f"**{p['ratio']:.1f}x** (target >= 10x)",
             f"- Padding share of lorafast's packed rows: **{100 * pad:.2f}%** (target <= 2%)"]
    for cls in ("f32", "bf16"):
        o = by.get(f"lorafast {cls}")
        if o and o.get("ratio"):
            lines.append(f"- {cls}: lorafast {o['tokens_per_s']:.0f} tokens/s, {o['note'].split('ratio over ')[-1]} "
                         f"{o['tokens_per_s'] / o['ratio']:.0f} tokens/s: **{o['ratio']:.2f}x** (target >= 1.5x, aim 2x)")
    return "\n".join(lines)


def markdown(rows):
    out = ["| section | side | precision | tokens/s | seconds | lorafast ratio | peak RSS (GiB) | step-1 loss | note |",
           "|---|---|---|---:|---:|---:|---:|---:|---|"]
    f = lambda v, spec: "" if v in (None, "") else format(float(v), spec)  # noqa: E731
    for r in rows:
        rss = "" if r.get("peak_rss_mb") in (None, "") else f"{float(r['peak_rss_mb']) / 1024:.2f}"
        out.append(f"| {r['section']} | {r['side']} | {r.get('precision') or ''} | {f(r.get('tokens_per_s'), '.0f')} "
                   f"| {f(r.get('seconds'), '.2f')} | {f(r.get('ratio'), '.2f')} | {rss} "
                   f"| {f(r.get('step1_loss'), '.6f')} | {r.get('note') or ''} |")
    return "\n".join(out)


def plot(path, record):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = record["rows"]
    train = [r for r in rows if r["section"] == "train" and r.get("tokens_per_s")]
    prep = [r for r in rows if r["section"] == "prepare"]
    fig, (ax_t, ax_p) = plt.subplots(1, 2, figsize=(13, 5.6), gridspec_kw={"width_ratios": [3, 1]})
    colors = {("lorafast", "f32"): "tab:blue", ("lorafast", "bf16"): "tab:cyan", ("TRL", "f32"): "tab:gray",
              ("TRL", "bf16"): "silver"}
    vals = [float(r["tokens_per_s"]) for r in train]
    bars = ax_t.bar([r["side"] for r in train], vals,
                    color=[colors[(r["side"].split()[0], r["precision"])] for r in train])
    for b, v in zip(bars, vals):
        ax_t.annotate(f"{v:.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    ax_t.set_ylabel("real (non-padding) training tokens/s (higher is better)")
    ax_t.tick_params(axis="x", labelrotation=30, labelsize=8)
    plt.setp(ax_t.get_xticklabels(), ha="right")
    ax_t.grid(True, axis="y", alpha=0.3)
    if vals:
        ax_t.set_ylim(0, max(vals) * 1.18)
    ratios = ", ".join(f"{r['precision']} {float(r['ratio']):.2f}x" for r in train
                       if r["side"].startswith("lorafast") and r.get("ratio") not in (None, ""))
    ax_t.set_title(f"packed SFT, lorafast over the fastest TRL side: {ratios}", fontsize=10)
    secs = [float(r["seconds"]) for r in prep]
    bars = ax_p.bar(["lorafast\nprepare", "TRL SFTTrainer\nconstruction"], secs, color=["tab:blue", "tab:gray"])
    for b, v in zip(bars, secs):
        ax_p.annotate(f"{v:.2f} s", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=9)
    ax_p.set_ylabel("seconds (lower is better)")
    ax_p.set_ylim(0, max(secs) * 1.18)
    ax_p.grid(True, axis="y", alpha=0.3)
    ax_p.set_title(f"preparation: {float(prep[0]['ratio']):.1f}x faster", fontsize=10)
    s, m = record["settings"], record["machine"]
    fig.suptitle(f"Instruction tuning vs TRL SFTTrainer: {s['conversations']} conversations, T={s['seq_len']} "
                 f"(bfd packing, padding {100 * record['padding_share']:.2f}%), Llama {s['layers']} layers hidden "
                 f"{s['width']}, LoRA r={s['rank']} on {' '.join(TARGETS)}, batch {record['batch']}, "
                 f"{s['threads']} threads", fontsize=9)
    fig.text(0.5, 0.01, f"{m['cpu']}, OMP_WAIT_POLICY={m['OMP_WAIT_POLICY']}, PyTorch {m.get('torch')}, transformers "
                        f"{m.get('transformers')}, TRL {m.get('trl')}, {record['date']}, load avg before "
                        f"{record['loadavg_before'][0]:.1f}", ha="center", fontsize=7, color="dimgray")
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lorafast", default=str(lfbench.DEFAULT_BINARY), help="path to the lorafast binary")
    ap.add_argument("--conversations", type=int, default=20000)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=1, help="packed rows per update (per_device_train_batch_size)")
    ap.add_argument("--steps", type=int, default=4, help="timed updates per side (after --warmup)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed first updates")
    ap.add_argument("--rounds", type=int, default=3, help="run every side this many times, keep the best")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--width", type=int, default=768, help="hidden_size")
    ap.add_argument("--intermediate", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=32000, help="the model's; the tokenizer is trained to at most this")
    ap.add_argument("--positions", type=int, default=1024)
    ap.add_argument("--rank", type=int, default=16, help="LoRA rank (alpha = rank)")
    ap.add_argument("--gradient-checkpointing", action="store_true",
                    help="add TRL sdpa sides with gradient_checkpointing=True (each precision)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="a tiny model (2 layers, hidden 64, vocab 512), 200 conversations prepared at T=128, every "
                         "training side 2 steps (1 timed) on the gate's batch of every row: a smoke test")
    ap.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON of the last run")
    ap.add_argument("--work-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "lorafast-sft-bench"),
                    help="where the conversations, tokenizer and models are cached")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    args = ap.parse_args()
    if args.quick:
        args = quick_args(args)
        args.quick = True
    return args


def main():
    args = parse_args()
    out = Path(args.out_dir)
    if args.replot:
        record = json.loads((out / f"{NAME}.json").read_text())
        plot(out / f"{NAME}.png", record)
        print(markdown(record["rows"]) + "\n\n" + verdicts(record["rows"], record["padding_share"]))
        return
    if not os.access(gptbench.TIME, os.X_OK):
        sys.exit(f"{gptbench.TIME} (GNU time, Debian package 'time') is needed for the peak RSS")
    lf = lfbench.Lorafast(args.lorafast, args.threads, omp_wait_policy="passive")
    prov = lfbench.Provenance(f"{NAME}.py", args, lf)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    sides = train_sides(args.gradient_checkpointing)

    lfbench.progress(f"correctness gate on the quick model: every side, a batch of all the rows of "
                     f"{GATE_CONVERSATIONS} conversations")
    gate_runs, rels = gate(args, lf, work, lf.tmp, sides)
    data, tokenizer, model = inputs(args, work)
    tiny = model if args.quick else tiny_model_for(args, work, tokenizer)
    prep_rounds = []
    for r in range(args.rounds):
        lfbench.progress(f"round {r + 1}/{args.rounds}: preparation of {args.conversations} conversations "
                         "(lorafast prepare, TRL SFTTrainer)")
        prep_rounds.append(prepare_round(args, lf, model, data, tiny, lf.tmp, f"prep{r}", keep=r == 0))
        if r == 0:
            rows = check_rows(prep_rounds[0])
    if args.quick:  # the gate ran every side for two steps: enough for a smoke test
        runs = gate_runs
        batch = f"all ({GATE_CONVERSATIONS} conversations)"
    else:
        batch = args.batch
        runs = run_training(args, lf, model, data, prep_rounds[0]["packed"], batch, lf.tmp, sides)
        for s, rs in runs.items():
            if "failed" in rs[0]:
                lfbench.progress(f"{s} failed: {rs[0]['failed']}")
    table, pad = summary(args, prep_rounds, rows, runs, sides, batch, rels)

    import torch
    import transformers
    import trl
    record = prov.finish(rows=table, padding_share=pad, batch=batch, packed_rows=len(rows),
                         prepare_rounds=[{"lorafast_s": r["lorafast"], **r["trl"]} for r in prep_rounds],
                         runs=runs, step1_loss_rel_diff=rels,
                         timing="training: real tokens / seconds of the timed updates (forward, backward, clip, AdamW)"
                                ", best round; preparation: best round")
    record["machine"].update(torch=torch.__version__, transformers=transformers.__version__, trl=trl.__version__)
    out.mkdir(parents=True, exist_ok=True)
    lfbench.write_csv(out / f"{NAME}.csv", table, COLUMNS)
    lfbench.write_json(out / f"{NAME}.json", record)
    plot(out / f"{NAME}.png", record)
    m = record["machine"]
    print(f"CPU: {m['cpu']}, {args.threads} threads, OMP_WAIT_POLICY=passive, PyTorch {m['torch']}, transformers "
          f"{m['transformers']}, TRL {m['trl']}; load avg before {record['loadavg_before'][0]:.1f}, after "
          f"{record['loadavg_after'][0]:.1f}" + (" (--quick: a smoke test, the numbers mean nothing)" if args.quick
                                                 else "") + "\n")
    print(markdown(table) + "\n\n" + verdicts(table, pad))
    lfbench.progress(f"\nwrote {out / NAME}.csv, .json, .png")


if __name__ == "__main__":
    main()
