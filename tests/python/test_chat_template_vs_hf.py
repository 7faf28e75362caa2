"""`lorafast template` against transformers' apply_chat_template (the oracle).

Every chat template TRL ships (trl/chat_templates/*.jinja: model families' templates
and their training variants with {% generation %}) renders a set of conversations:
system prompt, multi-turn, no system, one user message, empty and non-ASCII content,
content as a list of parts (with an image), tool calls with tools, a tool call
without content or tools, reasoning (as a field and in <think>), a null content,
numbers of every JSON kind; each with and without
add_generation_prompt. For each, lorafast's text must equal the library's byte for
byte, and its input_ids and assistant_masks (--json) must equal
apply_chat_template(tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
under a byte-level BPE tokenizer built here. Where the library raises (a template
that refuses a conversation), lorafast must exit 3 with one line naming the template.
"""

import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import warnings

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lfcase  # noqa: E402
from lfcase import check  # noqa: E402

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import trl  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()
harness = lfcase.Harness(__doc__)
WORK = tempfile.mkdtemp(prefix="lorafast_chat_")
TEMPLATES = os.path.join(os.path.dirname(trl.__file__), "chat_templates")

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city.",
                                           "parameters": {"type": "object", "properties": {
                                               "city": {"type": "string", "description": "The city"},
                                               "days": {"type": "integer"}}, "required": ["city"]}}}]
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}

CONVERSATIONS = {
    "system_multi_turn": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "2+2 = 4."},
        {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "It is 6.\nAnything else?"}],
    "no_system": [
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi! How can I help?"}],
    "one_user": [{"role": "user", "content": "Write a haiku."}],
    "non_ascii_empty": [
        {"role": "system", "content": ""},
        {"role": "user", "content": "Grüße, 日本語 ✓ \"quotes\" 'single' \\ back\tslash 😀"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "  padded  \n"},
        {"role": "assistant", "content": "Ça va — très bien. ½"}],
    "content_parts": [
        {"role": "system", "content": [{"type": "text", "text": "Answer briefly."}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Name a colour."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Blue."}]}],
    "tools": {"messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [CALL]},
        {"role": "tool", "name": "get_weather", "content": "{\"temp\": 21.5}"},
        {"role": "assistant", "content": "It is 21.5 degrees."}], "tools": TOOLS},
    "reasoning": [
        {"role": "user", "content": "Think: 7*6?", "meta": {"n": 1.5, "big": 12345678901234567890, "e": 1e-07}},
        {"role": "assistant", "reasoning_content": "7*6 is 42.", "content": "42"},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nDone."}],
    "systems_tool_only_none": [
        {"role": "system", "content": "A"},
        {"role": "user", "content": "B", "name": "bob"},
        {"role": "assistant", "tool_calls": [{"type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
        {"role": "tool", "content": "sunny"},
        {"role": "assistant", "content": None},
        {"role": "user", "content": "ok"}],
}


def build_tokenizer():
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [json.dumps(c, ensure_ascii=False) for c in CONVERSATIONS.values()] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=specials))
    model = os.path.join(WORK, "model")
    os.makedirs(model, exist_ok=True)
    tok.save(os.path.join(model, "tokenizer.json"))
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
              "tokenizer_class": "PreTrainedTokenizerFast"}
    with open(os.path.join(model, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)
    return model, PreTrainedTokenizerFast(tokenizer_file=os.path.join(model, "tokenizer.json"), **{
        k: v for k, v in config.items() if k.endswith("_token")})


MODEL, HF = build_tokenizer()
POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2)


def oracle(template, conversation, add_generation_prompt, generation):
    messages = conversation["messages"] if isinstance(conversation, dict) else conversation
    tools = conversation.get("tools") if isinstance(conversation, dict) else None
    kwargs = dict(chat_template=template, tools=tools, add_generation_prompt=add_generation_prompt)
    text = HF.apply_chat_template(messages, tokenize=False, **kwargs)
    out = HF.apply_chat_template(messages, tokenize=True, return_dict=True,
                                 return_assistant_tokens_mask=generation, **kwargs)
    masks = out["assistant_masks"] if generation else [0] * len(out["input_ids"])
    return text, list(out["input_ids"]), list(masks)


def run_template(binary, template_path, conversation_path, add_generation_prompt):
    args = [binary, "template", "--model", MODEL, "--chat-template", template_path,
            "--messages", conversation_path, "--json"]
    if add_generation_prompt:
        args.append("--add-generation-prompt")
    return subprocess.run(args, capture_output=True, timeout=60)


def compare_template(binary, name):
    path = os.path.join(TEMPLATES, name)
    with open(path, encoding="utf-8") as f:
        template = f.read()
    generation = "generation" in template and "{%" in template and "endgeneration" in template
    problems, rendered, refused, marked = [], 0, 0, 0
    cases = []
    for conv_name, conversation in CONVERSATIONS.items():
        conv_path = os.path.join(WORK, conv_name + ".json")
        if not os.path.exists(conv_path):
            with open(conv_path, "w", encoding="utf-8") as f:
                json.dump(conversation, f, ensure_ascii=False)
        for agp in (False, True):
            cases.append((conv_name, conversation, conv_path, agp))
    # lorafast's runs go on in the background while the library renders the same cases.
    runs = [POOL.submit(run_template, binary, path, c[2], c[3]) for c in cases]
    for (conv_name, conversation, conv_path, agp), run in zip(cases, runs):
        case = "%s/%s%s" % (name, conv_name, "/gen" if agp else "")
        try:
            want = oracle(template, conversation, agp, generation)
        except Exception as e:  # noqa: BLE001 - the template refuses this conversation
            want = e
        proc = run.result()
        err = proc.stderr.decode("utf-8", "replace")
        if isinstance(want, Exception):
            if proc.returncode != 3 or not err.startswith("lorafast: error:") or err.count("\n") != 1 \
                    or name not in err:
                problems.append("%s: library raised %r; lorafast exit %d: %r" % (
                    case, str(want)[:80], proc.returncode, err[:200]))
            refused += 1
            continue
        if proc.returncode != 0:
            problems.append("%s: lorafast exit %d: %s" % (case, proc.returncode, err.strip()[:300]))
            continue
        got = json.loads(proc.stdout)
        text, ids, masks = want
        if got["text"] != text:
            i = next((k for k in range(min(len(text), len(got["text"])))
                      if text[k] != got["text"][k]), min(len(text), len(got["text"])))
            problems.append("%s: text differs at char %d: lorafast %r, library %r" % (
                case, i, got["text"][max(0, i - 20):i + 40], text[max(0, i - 20):i + 40]))
        elif got["input_ids"] != ids:
            problems.append("%s: input_ids differ" % case)
        elif got["assistant_masks"] != masks:
            problems.append("%s: assistant_masks differ (lorafast %d ones, library %d)" % (
                case, sum(got["assistant_masks"]), sum(masks)))
        rendered += 1
        marked += sum(masks)
    check(not problems, "%d mismatches:\n  %s" % (len(problems), "\n  ".join(problems[:6])))
    check(not generation or marked > 0, "a generation template marked no assistant token")
    return "%d rendered identically, %d refused by both%s" % (
        rendered, refused, ", %d assistant tokens" % marked if generation else "")


for _name in sorted(f for f in os.listdir(TEMPLATES) if f.endswith(".jinja")):
    harness.add("identical_" + _name[:-len(".jinja")], lambda binary, n=_name: compare_template(binary, n))


def expect_exit(binary, args, code, name):
    proc = subprocess.run([binary, "template"] + args, capture_output=True, timeout=60)
    text = proc.stderr.decode("utf-8", "replace")
    check(proc.returncode == code, "%s: exit %d (want %d): %r" % (" ".join(args), proc.returncode, code, text))
    check(text.startswith("lorafast: error:") and text.count("\n") == 1, "stderr is not one line: %r" % text[:300])
    check(name in text, "stderr %r does not name %s" % (text, name))
    return text


def write(name, text):
    path = os.path.join(WORK, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


@harness.test
def model_dir_template_sources(binary):
    """chat_template.jinja beside the tokenizer wins over tokenizer_config.json's chat_template."""
    conv = write("plain.json", json.dumps(CONVERSATIONS["no_system"]))
    model = os.path.join(WORK, "model_sources")
    os.makedirs(model, exist_ok=True)
    for f in ("tokenizer.json",):
        with open(os.path.join(MODEL, f), "rb") as src, open(os.path.join(model, f), "wb") as dst:
            dst.write(src.read())
    config = {"eos_token": "</s>", "chat_template": "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{{ eos_token }}"}
    write("model_sources/tokenizer_config.json", json.dumps(config))
    out = subprocess.run([binary, "template", "--tokenizer-dir", model, "--messages", conv], capture_output=True)
    check(out.stdout.decode() == "[user]Hello there[assistant]Hi! How can I help?</s>", "config template: %r" % out.stdout)
    write("model_sources/chat_template.jinja", "{{ messages | length }}{{ bos_token is defined }}\n")
    out = subprocess.run([binary, "template", "--model", model, "--messages", conv], capture_output=True)
    check(out.stdout.decode() == "2False", "chat_template.jinja: %r" % out.stdout)


@harness.test
def errors(binary):
    conv = write("errors.json", json.dumps(CONVERSATIONS["no_system"]))
    qwen = os.path.join(TEMPLATES, "qwen2_5.jinja")
    expect_exit(binary, ["--messages", conv], 2, "--model")
    expect_exit(binary, ["--model", MODEL, "--tokenizer-dir", MODEL, "--messages", conv], 2, "--tokenizer-dir")
    expect_exit(binary, ["--model", MODEL, "--messages", conv], 3, "tokenizer_config.json")
    expect_exit(binary, ["--model", MODEL, "--chat-template", qwen, "--messages", os.path.join(WORK, "absent.json")],
                3, "absent.json")
    for name, text in [("not_json.json", "[{"), ("not_list.json", "{\"role\": \"user\"}"),
                       ("not_object.json", "[1]"), ("empty.json", "[]"), ("deep.json", "[" * 100000 + "]" * 100000),
                       ("unknown_key.json", "{\"messages\": [], \"extra\": 1}")]:
        expect_exit(binary, ["--model", MODEL, "--chat-template", qwen, "--messages", write(name, text)], 3, name)
    for name, text, line in [
            ("raises.jinja", "ok\n{% if true %}\n{{ raise_exception('no system prompts') }}{% endif %}", ":3:"),
            ("unsupported_tag.jinja", "a\n\n{% filter upper %}x{% endfilter %}", ":3:"),
            ("unsupported_filter.jinja", "{{ messages | wordcount }}", ":1:"),
            ("unclosed.jinja", "{% for m in messages %}\n{{ m }}", ":2:"),
            ("undefined_call.jinja", "\n{{ nothing() }}", ":2:"),
            ("loops.jinja", "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", ":1:"),
            ("grows.jinja", "{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}"
                            "{% endfor %}{{ ns.s }}", ":1:"),
            ("recursion.jinja", "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", ":1:")]:
        text = expect_exit(binary, ["--model", MODEL, "--chat-template", write(name, text), "--messages", conv], 3, name)
        check(line in text, "%s: the message %r does not name line %s" % (name, text, line))


if __name__ == "__main__":
    sys.exit(harness.main())
