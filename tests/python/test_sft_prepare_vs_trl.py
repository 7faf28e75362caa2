"""`lorafast prepare` against TRL's SFTTrainer dataset preparation (the oracle).

A byte-level BPE tokenizer is built here with the tokenizers library beside a chat
template TRL ships (qwen2_5_training.jinja, with {% generation %}), once without a
post-processor and once with one that starts tokenizer(text) with a bos token. For each data
format (text; prompt-completion as strings and as messages; messages; ShareGPT
conversations), and for the options completion_only_loss, assistant_only_loss and
max_length (truncation, and examples left with no label token), the input_ids and
labels lorafast writes must equal the `input_ids` and `labels` columns of
SFTTrainer(...).train_dataset built from the same file, tokenizer and template
(packing off). ShareGPT's human/gpt speakers are compared with TRL on the same
conversations named user/assistant (TRL keeps `from` as the role), and with
assistant-only loss (which TRL refuses for ShareGPT) with TRL on the same messages. Hostile data
exits 3 (2 for a flag the data cannot take) with one line naming the file and line,
and writes nothing.
"""

import json
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lfcase  # noqa: E402
from lfcase import check  # noqa: E402
from sft_fixtures import (CHATS, PROMPTS, TEMPLATES, TEXTS, WORK, build_model_dir, write_jsonl,  # noqa: E402
                          datasets, trl)
from tokenizers import processors  # noqa: E402
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402

harness = lfcase.Harness(__doc__)


MODEL, VOCAB = build_model_dir("model")
# As Llama 3's tokenizer.json: tokenizer(text) starts with a bos token (TRL tokenizes
# text that way; conversations are rendered, then tokenized without special tokens).
BOS_MODEL, _ = build_model_dir("bos_model", processors.Sequence([
    processors.ByteLevel(trim_offsets=False),
    processors.TemplateProcessing(single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)])]))
TINY = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, num_key_value_heads=2))


def trl_prepare(path, seq_len, completion_only_loss=None, assistant_only_loss=False, chat_template=None,
                model=MODEL):
    """input_ids and labels of SFTTrainer's prepared train_dataset (packing off)."""
    tok = AutoTokenizer.from_pretrained(model)
    if chat_template:
        with open(chat_template) as f:
            tok.chat_template = f.read()
    data = datasets.load_dataset("json", data_files=path, split="train", cache_dir=os.environ["HF_DATASETS_CACHE"])
    args = trl.SFTConfig(output_dir=os.path.join(WORK, "trl_out"), max_length=seq_len, packing=False,
                         completion_only_loss=completion_only_loss, assistant_only_loss=assistant_only_loss,
                         report_to="none", use_cpu=True, save_strategy="no")
    trainer = trl.SFTTrainer(model=TINY, args=args, train_dataset=data, processing_class=tok)
    prepared = trainer.train_dataset
    return [(list(r["input_ids"]), list(r["labels"])) for r in prepared]


def prepare(binary, data, seq_len, extra=(), model=MODEL):
    out = os.path.join(WORK, "out.jsonl")
    if os.path.exists(out):
        os.remove(out)
    proc = subprocess.run([binary, "prepare", "--model", model, "--data", data, "--out", out,
                           "--seq-len", str(seq_len), *extra], capture_output=True, timeout=120)
    check(proc.returncode == 0, "prepare %s exit %d: %s" % (data, proc.returncode, proc.stderr.decode()[:400]))
    rows = []
    with open(out, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            n = len(r["input_ids"])
            check(r["position_ids"] == list(range(n)) and r["seq_lengths"] == [n], "position_ids/seq_lengths")
            rows.append((r["input_ids"], r["labels"]))
    return rows, proc.stdout.decode().strip()


def compare(got, want, what):
    check(len(got) == len(want), "%s: %d rows, TRL %d" % (what, len(got), len(want)))
    for i, ((ids, labels), (want_ids, want_labels)) in enumerate(zip(got, want)):
        check(ids == want_ids, "%s row %d: input_ids differ\n  lorafast %s\n  trl      %s" % (what, i, ids, want_ids))
        check(labels == want_labels, "%s row %d: labels differ\n  lorafast %s\n  trl      %s" % (
            what, i, labels, want_labels))
    masked = sum(lab == -100 for _, labels in want for lab in labels)
    return "%d rows, %d tokens, %d masked" % (len(want), sum(len(i) for i, _ in want), masked)


def oracle_case(rows, seq_len, completion_only=None, assistant_only=False, chat_template=None, trl_rows=None,
                model=MODEL):
    def fn(binary):
        path = write_jsonl("data/%s.jsonl" % fn.__name__, rows)
        extra = []
        if completion_only is not None:
            extra += ["--completion-only-loss", "true" if completion_only else "false"]
        if assistant_only:
            extra.append("--assistant-only-loss")
        if chat_template:
            extra += ["--chat-template", chat_template]
        got, summary = prepare(binary, path, seq_len, extra, model)
        trl_path = path if trl_rows is None else write_jsonl("data/%s_trl.jsonl" % fn.__name__, trl_rows)
        want = trl_prepare(trl_path, seq_len, completion_only, assistant_only, chat_template, model)
        return compare(got, want, fn.__name__) + "; " + summary
    return fn


def sharegpt(chat, names):
    return {"conversations": [{"from": names.get(m["role"], m["role"]), "value": m["content"]} for m in chat]}


TEXT_ROWS = [{"text": t} for t in TEXTS]
PC_ROWS = [{"prompt": p, "completion": c} for p, c in PROMPTS]
CHAT_PC_ROWS = [{"prompt": c[:-1], "completion": c[-1:]} for c in CHATS]
MESSAGE_ROWS = [{"messages": c} for c in CHATS]
QWEN3 = os.path.join(TEMPLATES, "qwen3_training.jinja")
HUMAN_GPT = {"user": "human", "assistant": "gpt"}
# A template reading a variable that only chat_template_kwargs sets.
KWARGS_TEMPLATE = os.path.join(WORK, "kwargs.jinja")
with open(KWARGS_TEMPLATE, "w") as _f:
    _f.write("{% if greeting is defined %}{{ greeting }}\n{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n"
             "{% if m.role == 'assistant' %}{% generation %}{{ m.content }}<|im_end|>{% endgeneration %}{% else %}"
             "{{ m.content }}<|im_end|>{% endif %}\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
             "{% endif %}")

CASES = {
    "text": (TEXT_ROWS, 64, {}),
    "text_all_fit": (TEXT_ROWS, 1024, {}),
    "prompt_completion": (PC_ROWS, 64, {}),
    "prompt_completion_everything": (PC_ROWS, 64, {"completion_only": False}),
    "chat_prompt_completion": (CHAT_PC_ROWS, 1024, {}),
    "chat_prompt_completion_truncated": (CHAT_PC_ROWS, 60, {}),
    "chat_prompt_completion_everything": (CHAT_PC_ROWS, 1024, {"completion_only": False}),
    "chat_prompt_completion_assistant_only": (CHAT_PC_ROWS, 1024, {"assistant_only": True}),
    "chat_prompt_completion_qwen3": (CHAT_PC_ROWS, 1024, {"chat_template": QWEN3}),
    "text_bos": (TEXT_ROWS, 64, {"model": BOS_MODEL}),
    "prompt_completion_bos": (PC_ROWS, 64, {"model": BOS_MODEL}),
    "messages_bos": (MESSAGE_ROWS, 1024, {"assistant_only": True, "model": BOS_MODEL}),
    "messages": (MESSAGE_ROWS, 1024, {}),
    "messages_template_kwargs": ([{"messages": c, "chat_template_kwargs": {"greeting": "Hi %d" % i}}
                                  for i, c in enumerate(CHATS)], 1024,
                                 {"assistant_only": True, "chat_template": KWARGS_TEMPLATE}),
    "messages_assistant_only": (MESSAGE_ROWS, 1024, {"assistant_only": True}),
    "messages_assistant_only_truncated": (MESSAGE_ROWS, 30, {"assistant_only": True}),
    "messages_qwen3_assistant_only": (MESSAGE_ROWS, 1024, {"assistant_only": True, "chat_template": QWEN3}),
    "sharegpt": ([sharegpt(c, {}) for c in CHATS], 1024, {}),
    "sharegpt_human_gpt": ([sharegpt(c, HUMAN_GPT) for c in CHATS], 1024, {"trl_rows": [sharegpt(c, {}) for c in CHATS]}),
    # TRL refuses assistant_only_loss on ShareGPT data (it checks before converting): the same as messages.
    "sharegpt_assistant_only": ([sharegpt(c, HUMAN_GPT) for c in CHATS], 1024,
                                {"assistant_only": True, "trl_rows": MESSAGE_ROWS}),
}
for _name, (_rows, _seq_len, _options) in CASES.items():
    _fn = oracle_case(_rows, _seq_len, **_options)
    _fn.__name__ = _name
    harness.add("same_as_trl_" + _name, _fn)


@harness.test
def directory_of_files(binary):
    """A directory: its .jsonl files in name order, each in its own format."""
    folder = os.path.join(WORK, "folder")
    write_jsonl("folder/a.jsonl", MESSAGE_ROWS)
    write_jsonl("folder/b.jsonl", TEXT_ROWS)
    write_jsonl("folder/notes.txt", [{"not": "read"}])
    got, summary = prepare(binary, folder, 64)
    want = trl_prepare(os.path.join(folder, "a.jsonl"), 64) + trl_prepare(os.path.join(folder, "b.jsonl"), 64)
    check("in 2 files" in summary, "summary %r" % summary)
    return compare(got, want, "directory")


@harness.test
def summary_counts(binary):
    """The summary line counts examples, drops and their reasons, truncation, tokens and label tokens."""
    rows = PC_ROWS
    got, summary = prepare(binary, write_jsonl("data/summary.jsonl", rows), 64)
    tokens = sum(len(i) for i, _ in got)
    labels = sum(lab != -100 for _, ls in got for lab in ls)
    want = "4 examples in 1 file, 1 dropped (0 with no label tokens, 1 with none left after truncation), " \
           "1 truncated to 64 tokens; 3 kept, %d tokens, %d label tokens; 3 rows (packing none)" % (tokens, labels)
    check(summary == "prepare: " + want, "summary %r, want %r" % (summary, want))


def expect_error(binary, data, code, names, extra=(), model=MODEL):
    out = os.path.join(WORK, "refused.jsonl")
    if os.path.exists(out):
        os.remove(out)
    proc = subprocess.run([binary, "prepare", "--model", model, "--data", data, "--out", out, "--seq-len", "64",
                           *extra], capture_output=True, timeout=120)
    err = proc.stderr.decode("utf-8", "replace")
    check(proc.returncode == code, "%s: exit %d (want %d): %r" % (data, proc.returncode, code, err[:300]))
    check(err.startswith("lorafast: error:") and err.count("\n") == 1, "stderr is not one line: %r" % err[:300])
    for name in names:
        check(name in err, "stderr %r does not name %r" % (err, name))
    check(not os.path.exists(out), "%s: an output was written" % data)
    check(not [f for f in os.listdir(WORK) if f.startswith("refused.jsonl")], "a temporary file was left")
    return err


def hostile(name, lines):
    path = os.path.join(WORK, "hostile", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


@harness.test
def hostile_data(binary):
    ok = json.dumps({"messages": CHATS[1]})
    cases = [
        ("bad_json.jsonl", [ok, ok, "{\"messages\": [}"], 3),
        ("text_not_string.jsonl", ["{\"text\": 5}"], 1),
        ("no_role.jsonl", [ok, json.dumps({"messages": [{"content": "hi"}]})], 2),
        ("role_not_string.jsonl", [json.dumps({"messages": [{"role": 1, "content": "hi"}]})], 1),
        ("content_number.jsonl", [json.dumps({"messages": [{"role": "user", "content": 3}]})], 1),
        ("no_value.jsonl", [json.dumps({"conversations": [{"from": "human"}]})], 1),
        ("mixed.jsonl", [ok, "", json.dumps({"text": "a"})], 3),
        ("mixed_prompt_kinds.jsonl", [json.dumps(PC_ROWS[0]), json.dumps(CHAT_PC_ROWS[0])], 2),
        ("prompt_only.jsonl", [json.dumps({"prompt": "a"})], 1),
        ("completion_list_prompt_text.jsonl", [json.dumps({"prompt": "a", "completion": [CHATS[0][2]]})], 1),
        ("two_formats.jsonl", [json.dumps({"text": "a", "messages": CHATS[0]})], 1),
        ("no_format.jsonl", [json.dumps({"question": "a"})], 1),
        ("not_object.jsonl", ["[1, 2]"], 1),
        ("empty_messages.jsonl", [json.dumps({"messages": []})], 1),
        ("deep.jsonl", ["[" * 100000 + "]" * 100000], 1),
        ("duplicate_key.jsonl", ["{\"text\": \"a\", \"text\": \"b\"}"], 1),
        ("tools_not_list.jsonl", [json.dumps({"messages": CHATS[1], "tools": "{}"})], 1),
        ("kwargs_taken.jsonl", [ok, json.dumps({"messages": CHATS[1], "chat_template_kwargs": {"tools": []}})], 2),
    ]
    for name, lines, line in cases:
        expect_error(binary, hostile(name, lines), 3, ["%s:%d:" % (name, line)])
    expect_error(binary, hostile("empty.jsonl", ["", "  "]), 3, ["empty.jsonl", "no examples"])
    expect_error(binary, os.path.join(WORK, "absent.jsonl"), 3, ["absent.jsonl"])
    os.makedirs(os.path.join(WORK, "no_jsonl"), exist_ok=True)
    expect_error(binary, os.path.join(WORK, "no_jsonl"), 3, ["no_jsonl"])
    # A template that raises names the example's line and the template's.
    raises = os.path.join(WORK, "raises.jinja")
    with open(raises, "w") as f:
        f.write("{% for m in messages %}\n{% if m.role == 'system' %}{{ raise_exception('no system') }}{% endif %}"
                "{{ m.content }}{% endfor %}")
    expect_error(binary, hostile("system.jsonl", [ok, json.dumps({"messages": CHATS[0]})]), 3,
                 ["system.jsonl:2:", "raises.jinja:2:", "no system"], ["--chat-template", raises])
    # Flags the data cannot take: exit 2 (naming the flag), or 3 for a template without generation blocks.
    expect_error(binary, hostile("text.jsonl", [json.dumps(TEXT_ROWS[0])]), 2, ["text.jsonl:1:", "--assistant-only-loss"],
                 ["--assistant-only-loss"])
    expect_error(binary, hostile("chat.jsonl", [ok]), 3, ["qwen2_5.jinja", "generation"],
                 ["--assistant-only-loss", "--chat-template", os.path.join(TEMPLATES, "qwen2_5.jinja")])


@harness.test
def huge_line_is_refused_early(binary):
    """A 1 GiB line (a sparse file, no newline) is refused after the 64 MiB line cap, naming line 2."""
    path = os.path.join(WORK, "hostile", "huge.jsonl")
    with open(path, "wb") as f:
        f.write(json.dumps(TEXT_ROWS[0]).encode() + b"\n")
        f.truncate(1 << 30)
    err = expect_error(binary, path, 3, ["huge.jsonl:2:", "longer than"])
    os.remove(path)
    return err.strip()[len("lorafast: error: "):][:100]


@harness.test
def existing_output_kept_on_error(binary):
    out = os.path.join(WORK, "kept.jsonl")
    with open(out, "w") as f:
        f.write("previous\n")
    bad = hostile("bad_line.jsonl", [json.dumps(TEXT_ROWS[0]), "{"])
    proc = subprocess.run([binary, "prepare", "--model", MODEL, "--data", bad, "--out", out], capture_output=True)
    check(proc.returncode == 3, "exit %d" % proc.returncode)
    with open(out) as f:
        check(f.read() == "previous\n", "the existing output was changed")


if __name__ == "__main__":
    sys.exit(harness.main())
