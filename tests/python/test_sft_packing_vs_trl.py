"""Packed instruction data against TRL's SFTTrainer (the oracle).

Rows: `lorafast prepare --packing bfd|wrapped` must write the rows TRL's packed
train_dataset holds (input_ids, labels and, for bfd, seq_lengths), for conversations
with assistant-only loss, prompt-completion data whose prompts outgrow the row
(examples left with no label token are kept, as TRL keeps them when packing), and
1500 texts of many lengths (TRL packs in datasets.map batches of 1000, and ties in
length are common).

Loss: with the same tiny Llama (saved by transformers) in float64 (transformers' own
code in IEEE double, as test_llama_interop.py runs it), `lorafast eval` on the JSONL
must give the loss of TRL's collated batch of all rows (padding-free for bfd: cut
into its documents where the position_ids restart, each run alone; padded with an
attention mask for --packing none), and the same count of predicted tokens; and
`lorafast finetune --dtype f64` must report that loss at step 1 (LoRA's B starts at
zero, so step 1 runs the base model) for a batch holding every row. Tolerance 1e-10
relative: both sides sum the same float64 terms in different orders.
"""

import csv
import json
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lfcase  # noqa: E402
from lfcase import check  # noqa: E402
from sft_fixtures import CHATS, PROMPTS, TEXTS, WORK, build_model_dir, write_jsonl, datasets, trl  # noqa: E402
import torch  # noqa: E402
from test_llama_interop import float64_transformers, load_oracle  # noqa: E402
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402

harness = lfcase.Harness(__doc__)
TOKENIZER_DIR, VOCAB = build_model_dir("tokenizer")


def build_model():
    """A tiny Llama saved beside the tokenizer (float32 weights, read as float64 by both sides)."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                         tie_word_embeddings=False))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    path = os.path.join(WORK, "llama")
    model.save_pretrained(path)
    for name in os.listdir(TOKENIZER_DIR):
        shutil.copy(os.path.join(TOKENIZER_DIR, name), path)
    return path, model


MODEL, TORCH_MODEL = build_model()
MESSAGES = [{"messages": c} for c in CHATS] + [
    {"messages": [{"role": "user", "content": "Question %d?" % i}, {"role": "assistant", "content": "yes " * (i % 9)}]}
    for i in range(30)]
PROMPT_COMPLETION = [{"prompt": p, "completion": c} for p, c in PROMPTS] * 3
MANY_TEXTS = [{"text": ("w%d " % i) * (1 + (i * 7) % 23)} for i in range(1500)] + [{"text": t} for t in TEXTS]


def trl_trainer(path, seq_len, packing, strategy="bfd", assistant_only=False):
    tok = AutoTokenizer.from_pretrained(MODEL)
    data = datasets.load_dataset("json", data_files=path, split="train", cache_dir=os.environ["HF_DATASETS_CACHE"])
    args = trl.SFTConfig(output_dir=os.path.join(WORK, "trl_out"), max_length=seq_len, packing=packing,
                         packing_strategy=strategy, assistant_only_loss=assistant_only, report_to="none",
                         use_cpu=True, save_strategy="no")
    return trl.SFTTrainer(model=TORCH_MODEL, args=args, train_dataset=data, processing_class=tok)


def run(binary, *args):
    proc = subprocess.run([binary, *args], capture_output=True, timeout=600)
    check(proc.returncode == 0, "%s exit %d: %s" % (args[0], proc.returncode, proc.stderr.decode()[-600:]))
    return proc.stdout.decode()


def prepare_rows(binary, path, seq_len, packing, extra=()):
    out = os.path.join(WORK, "packed.jsonl")
    run(binary, "prepare", "--model", MODEL, "--data", path, "--out", out, "--seq-len", str(seq_len),
        "--packing", packing, *extra)
    with open(out, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def rows_case(name, rows, seq_len, strategy, assistant_only=False):
    def fn(binary):
        path = write_jsonl("data/%s.jsonl" % name, rows)
        got = prepare_rows(binary, path, seq_len, strategy, ["--assistant-only-loss"] if assistant_only else [])
        want = trl_trainer(path, seq_len, True, strategy, assistant_only).train_dataset
        check(len(got) == len(want), "%s: %d rows, TRL %d" % (name, len(got), len(want)))
        for i, (g, w) in enumerate(zip(got, want)):
            for column in ("input_ids", "labels") + (("seq_lengths",) if strategy == "bfd" else ()):
                check(g[column] == list(w[column]), "%s row %d: %s differ\n  lorafast %s\n  trl      %s" % (
                    name, i, column, g[column], list(w[column])))
            if strategy == "bfd":
                check(g["position_ids"] == [p for n in g["seq_lengths"] for p in range(n)], "position_ids")
        docs = sum(len(r["seq_lengths"]) for r in got)
        fill = sum(len(r["input_ids"]) for r in got) / (len(got) * seq_len)
        return "%d rows of %d, %d documents, %.1f%% filled" % (len(got), seq_len, docs, 100 * fill)
    fn.__name__ = name
    return fn


for _name, _rows, _seq_len, _strategy, _assistant in [
        ("bfd_messages_assistant_only", MESSAGES, 256, "bfd", True),
        ("bfd_prompt_completion_truncated", PROMPT_COMPLETION, 40, "bfd", False),
        ("bfd_1500_texts", MANY_TEXTS, 64, "bfd", False),
        ("wrapped_1500_texts", MANY_TEXTS, 64, "wrapped", False),
        ("wrapped_messages", MESSAGES, 100, "wrapped", True)]:
    harness.add("same_rows_as_trl_" + _name, rows_case(_name, _rows, _seq_len, _strategy, _assistant))


def trl_loss(path, seq_len, packing, assistant_only):
    """The float64 loss of transformers' model on TRL's collated batch of every prepared
    row, and its predicted tokens. Packed (padding-free) batches are cut where TRL's
    position_ids restart and each document runs alone: what TRL's packing means (no
    attention across documents), in transformers' eager attention, which (unlike its
    SDPA path) runs in float64 under float64_transformers but has no document mask."""
    trainer = trl_trainer(path, seq_len, packing, "bfd", assistant_only)
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(rows)
    model = load_oracle(LlamaForCausalLM, MODEL)
    if packing:
        starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [batch["input_ids"].shape[1]]
        pieces = [(batch["input_ids"][:, a:b], batch["labels"][:, a:b], None) for a, b in zip(starts, starts[1:])]
    else:
        pieces = [(batch["input_ids"], batch["labels"], batch["attention_mask"])]
    total, predicted = 0.0, 0
    for ids, labels, mask in pieces:
        with torch.no_grad(), float64_transformers():
            logits = model(input_ids=ids, attention_mask=mask).logits
        # transformers' causal LM loss (shift, ignore -100), kept in float64: its own
        # loss function casts the logits to float32.
        shifted = labels[:, 1:]
        predicted += int((shifted != -100).sum())
        total += torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), shifted.reshape(-1),
                                                   ignore_index=-100, reduction="sum").item()
    return total / predicted, predicted, len(rows)


def loss_case(name, rows, seq_len, packing, assistant_only):
    def fn(binary):
        path = write_jsonl("data/loss_%s.jsonl" % name, rows)
        want, predicted, row_count = trl_loss(path, seq_len, packing != "none", assistant_only)
        extra = ["--assistant-only-loss"] if assistant_only else []
        got = json.loads(run(binary, "eval", "--model", MODEL, "--data", path, "--dtype", "f64", "--seq-len",
                             str(seq_len), "--packing", packing, "--json", *extra))
        check(got["tokens"] == predicted, "eval counts %d predicted tokens, TRL %d" % (got["tokens"], predicted))
        check(abs(got["loss"] - want) <= 1e-10 * abs(want), "eval loss %.15g, transformers %.15g" % (got["loss"], want))
        out = os.path.join(WORK, "ft_" + name)
        run(binary, "finetune", "--model", MODEL, "--data", path, "--dtype", "f64", "--seq-len", str(seq_len),
            "--packing", packing, "--batch", str(row_count), "--steps", "1", "--val-fraction", "0", "--out", out,
            "--targets", "q_proj", "v_proj", *extra)
        with open(os.path.join(out, "train_log.csv")) as f:
            step1 = float(next(csv.DictReader(f))["loss"])
        check(abs(step1 - want) <= 1e-10 * abs(want), "finetune step 1 loss %.15g, transformers %.15g" % (step1, want))
        return "loss %.12f over %d tokens in %d rows" % (want, predicted, row_count)
    fn.__name__ = name
    return fn


for _name, _rows, _seq_len, _packing, _assistant in [
        ("bfd_messages_assistant_only", MESSAGES, 256, "bfd", True),
        ("bfd_prompt_completion", PROMPT_COMPLETION, 40, "bfd", False),
        ("padded_messages", MESSAGES, 256, "none", False)]:
    harness.add("same_loss_as_transformers_" + _name, loss_case(_name, _rows, _seq_len, _packing, _assistant))


def relative(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


@harness.test
def same_adapter_as_trl_after_three_steps(binary):
    """TRL's SFTTrainer (packing, PEFT LoRA r=4 on q_proj and v_proj, constant lr 1e-2,
    clip 1, float32, one batch of every row per step) and `lorafast finetune
    --init-adapter` from TRL's initial adapter: after 3 steps each adapter tensor of
    lorafast float64 must lie within 1e-3 relative of TRL's (the same training: a
    different loss, mask or optimizer moves it by O(1)), and lorafast float32 within
    twice TRL float32's own distance from lorafast float64 (plus 1e-7), i.e. as
    accurate as PyTorch's float32 on the same run."""
    import peft
    from safetensors.torch import load_file
    path = write_jsonl("data/adapter.jsonl", MESSAGES)
    rows = len(trl_trainer(path, 256, True).train_dataset)
    data = datasets.load_dataset("json", data_files=path, split="train", cache_dir=os.environ["HF_DATASETS_CACHE"])
    args = trl.SFTConfig(output_dir=os.path.join(WORK, "trl_adapter"), max_length=256, packing=True, max_steps=3,
                         per_device_train_batch_size=rows,
                         learning_rate=1e-2, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                         max_grad_norm=1.0, bf16=False, gradient_checkpointing=False, logging_steps=1,
                         report_to="none", use_cpu=True, save_strategy="no", seed=0)
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    trainer = trl.SFTTrainer(model=LlamaForCausalLM.from_pretrained(MODEL), args=args, train_dataset=data,
                             processing_class=AutoTokenizer.from_pretrained(MODEL), peft_config=lora)
    init, final = os.path.join(WORK, "trl_init_adapter"), os.path.join(WORK, "trl_final_adapter")
    trainer.model.save_pretrained(init)
    trainer.train()
    trainer.model.save_pretrained(final)
    trl_losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    want = load_file(os.path.join(final, "adapter_model.safetensors"))
    got = {}
    for dtype in ("f64", "f32"):
        out = os.path.join(WORK, "lorafast_adapter_" + dtype)
        run(binary, "finetune", "--model", MODEL, "--data", path, "--init-adapter", init, "--seq-len", "256",
            "--batch", str(rows), "--steps", "3", "--lr", "1e-2", "--min-lr-ratio", "1", "--warmup", "0",
            "--clip", "1", "--val-fraction", "0", "--eval-every", "0", "--dtype", dtype, "--out", out)
        got[dtype] = load_file(os.path.join(out, "adapter_model.safetensors"))
    check(sorted(got["f64"]) == sorted(want), "tensors %s, TRL %s" % (sorted(got["f64"]), sorted(want)))
    worst = 0.0
    for name in want:
        exact = got["f64"][name]
        check(relative(want[name], exact) <= 1e-3, "%s: TRL and lorafast f64 differ by %.3g" % (
            name, relative(want[name], exact)))
        ours, theirs = relative(got["f32"][name], exact), relative(want[name], exact)
        check(ours <= 2 * theirs + 1e-7, "%s: lorafast f32 %.3g from f64, TRL f32 %.3g" % (name, ours, theirs))
        worst = max(worst, theirs)
    with open(os.path.join(WORK, "lorafast_adapter_f32", "train_log.csv")) as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    check(len(trl_losses) == 3 and all(abs(a - b) <= 1e-4 * abs(b) for a, b in zip(losses, trl_losses)),
          "losses lorafast %s, TRL %s" % (losses, trl_losses))
    return "%d rows; TRL f32 within %.2g of lorafast f64; losses %s" % (rows, worst, ["%.5f" % x for x in losses])


def refused(binary, args, code, names):
    proc = subprocess.run([binary, *args], capture_output=True, timeout=120)
    err = proc.stderr.decode("utf-8", "replace")
    check(proc.returncode == code, "%s: exit %d (want %d): %r" % (args[0], proc.returncode, code, err[-300:]))
    check(err.startswith("lorafast: error:") and err.count("\n") == 1, "stderr is not one line: %r" % err[-300:])
    for name in names:
        check(name in err, "stderr %r does not name %r" % (err, name))


@harness.test
def finetune_refuses_bad_data_and_changed_rows(binary):
    """A bad line stops finetune and eval before anything is written (exit 3, the file
    and line named); --resume refuses a --packing that gives other rows."""
    bad = write_jsonl("data/bad.jsonl", MESSAGES[:3])
    with open(bad, "a") as f:
        f.write('{"messages": [{"content": "no role"}]}\n')
    out = os.path.join(WORK, "refused_out")
    refused(binary, ["finetune", "--model", MODEL, "--data", bad, "--out", out, "--steps", "1"], 3, ["bad.jsonl:4:"])
    check(not os.path.exists(out), "finetune created its output directory")
    refused(binary, ["eval", "--model", MODEL, "--data", bad], 3, ["bad.jsonl:4:"])
    good = write_jsonl("data/good.jsonl", MESSAGES)
    run(binary, "finetune", "--model", MODEL, "--data", good, "--out", out, "--steps", "2", "--stop-after", "1",
        "--seq-len", "256", "--batch", "2", "--val-fraction", "0")
    refused(binary, ["finetune", "--model", MODEL, "--data", good, "--out", out, "--resume", "--packing", "none"], 3,
            ["good.jsonl", "checkpoint"])
    run(binary, "finetune", "--model", MODEL, "--data", good, "--out", out, "--resume")


if __name__ == "__main__":
    sys.exit(harness.main())
