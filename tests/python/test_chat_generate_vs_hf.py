"""`lorafast generate --chat / --messages` against transformers (the oracle).

A tiny random Llama saved beside a byte-level BPE tokenizer whose chat template is
TRL's qwen2_5_training.jinja (its turns end with the special token <|im_end|>).
For a user message (--chat) and a conversation file with a system prompt and an
earlier exchange (--messages), the prompt is rendered with the generation prompt
and tokenized by apply_chat_template, and greedy decoding runs in transformers
(float32, eos_token_id = <|im_end|>, the only eos: config.json has none) up to 24
new tokens; lorafast's streamed answer must be the decoded text of those tokens
without the closing <|im_end|>. Once with the random model (the answer runs to the
limit) and once with <|im_end|>'s head row made 1.01 times that of the answer's
sixth token, so the answer ends there at the template's end-of-turn token. Greedy
ties are not an issue at random weights (logits differ far above float32 noise).
"""

import json
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lfcase  # noqa: E402
from lfcase import check  # noqa: E402
from sft_fixtures import CHATS, WORK, build_model_dir  # noqa: E402
from hf_random import randomize  # noqa: E402
import shutil  # noqa: E402
import torch  # noqa: E402
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402

harness = lfcase.Harness(__doc__)
TOKENIZER_DIR, VOCAB = build_model_dir("chat_tokenizer")
TOKENS = 24


def save_model(seed, end_like=None):
    """A random tiny Llama with the tokenizer; with `end_like`, <|im_end|>'s row of the
    head is that token's scaled by 1.01, so greedy decoding ends a turn wherever it
    would have produced that token with a positive logit."""
    torch.manual_seed(seed)
    model = randomize(LlamaForCausalLM(LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, eos_token_id=None, bos_token_id=None)))
    if end_like is not None:
        end = AutoTokenizer.from_pretrained(TOKENIZER_DIR).convert_tokens_to_ids("<|im_end|>")
        with torch.no_grad():
            model.lm_head.weight[end] = 1.01 * model.lm_head.weight[end_like]
    path = os.path.join(WORK, "chat_model_%d_%s" % (seed, end_like))
    model.save_pretrained(path)
    for name in os.listdir(TOKENIZER_DIR):
        shutil.copy(os.path.join(TOKENIZER_DIR, name), path)
    return path, model.eval()


def hf_answer(model, tok, messages):
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=TOKENS, do_sample=False, eos_token_id=end,
                             pad_token_id=end)[0, len(ids):].tolist()
    stopped = bool(out) and out[-1] == end
    return tok.decode(out[:-1] if stopped else out, skip_special_tokens=False), stopped, out


def lorafast_answer(binary, model_dir, args):
    proc = subprocess.run([binary, "generate", "--model", model_dir, "--greedy", "--tokens", str(TOKENS), *args],
                          capture_output=True, timeout=120)
    check(proc.returncode == 0, "generate exit %d: %s" % (proc.returncode, proc.stderr.decode()[-400:]))
    return proc.stdout.decode()


CONVERSATION = CHATS[0][:4]  # system, user, assistant, user
CHAT = [{"role": "user", "content": "Hello there"}]


def case(stop):
    def fn(binary):
        path, model = save_model(1)
        if stop:  # the 6th token of the plain model's answer becomes the end of the turn
            tok = AutoTokenizer.from_pretrained(path)
            path, model = save_model(1, end_like=hf_answer(model, tok, CHAT)[2][5])
        tok = AutoTokenizer.from_pretrained(path)
        chat, stopped, _ = hf_answer(model, tok, CHAT)
        check(stopped == stop, "transformers' answer %s at <|im_end|>: %r" % ("runs past" if stop else "stops", chat))
        got = lorafast_answer(binary, path, ["--chat", "Hello there"])
        check(got == chat, "--chat: lorafast %r, transformers %r" % (got, chat))
        messages = hf_answer(model, tok, CONVERSATION)[0]
        conversation = os.path.join(WORK, "conversation.json")
        with open(conversation, "w") as f:
            json.dump(CONVERSATION, f)
        got = lorafast_answer(binary, path, ["--messages", conversation])
        check(got == messages, "--messages: lorafast %r, transformers %r" % (got, messages))
        return "%r / %r" % (chat[:40], messages[:40])
    return fn


harness.add("greedy_answer_stops_at_end_of_turn", case(True))
harness.add("greedy_answer_stops_at_the_token_limit", case(False))


@harness.test
def chat_needs_a_tokenizer(binary):
    path, _ = save_model(0)
    os.remove(os.path.join(path, "tokenizer.json"))
    proc = subprocess.run([binary, "generate", "--model", path, "--chat", "hi"], capture_output=True, timeout=60)
    err = proc.stderr.decode()
    check(proc.returncode != 0 and "tokenizer.json" in err and err.count("\n") == 1, "exit %d: %r" % (
        proc.returncode, err))


if __name__ == "__main__":
    sys.exit(harness.main())
