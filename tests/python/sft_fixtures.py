"""Instruction-data fixtures shared by the TRL oracle tests: a scratch directory
(also the datasets cache), conversations, texts and prompt-completion pairs with
non-ASCII and long content, a byte-level BPE tokenizer trained on them beside a
chat template TRL ships (qwen2_5_training.jinja, with {% generation %}), and JSONL
writing.
"""

import atexit
import json
import os
import shutil
import tempfile
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
WORK = tempfile.mkdtemp(prefix="lorafast_sft_")
atexit.register(shutil.rmtree, WORK, True)
os.environ["HF_DATASETS_CACHE"] = os.path.join(WORK, "hf_datasets")
os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"

import datasets  # noqa: E402
import trl  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()
datasets.disable_progress_bars()
datasets.logging.set_verbosity_error()
TEMPLATES = os.path.join(os.path.dirname(trl.__file__), "chat_templates")
EOS = "<|im_end|>"

SYSTEM = {"role": "system", "content": "You are terse."}
CHATS = [
    [SYSTEM, {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."},
     {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "It is 6.\nAnything else?"}],
    [{"role": "user", "content": "Grüße, 日本語 ✓ \"quoted\" 😀"}, {"role": "assistant", "content": "Ça va — très bien."}],
    [{"role": "user", "content": "Write a long answer."},
     {"role": "assistant", "content": "word " * 60 + "end."}],
]
TEXTS = ["The sky is blue.", "Ends with eos already." + EOS, "Grüße 日本語 ✓ 😀 " * 3, "long " * 80]
PROMPTS = [("The capital of France is", " Paris."), ("Hello wor", "ld!"), ("Say " * 70, "ok"),
           ("Translate: chat ->", " cat" + EOS)]


def build_model_dir(name, post_processor=None):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [json.dumps(c, ensure_ascii=False) for c in CHATS] + TEXTS + [p + c for p, c in PROMPTS]
    tok.train_from_iterator(corpus * 10, trainers.BpeTrainer(
        vocab_size=500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=specials))
    tok.post_processor = post_processor
    model = os.path.join(WORK, name)
    os.makedirs(model)
    tok.save(os.path.join(model, "tokenizer.json"))
    with open(os.path.join(model, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": EOS, "pad_token": "<pad>", "tokenizer_class": "PreTrainedTokenizerFast"}, f)
    with open(os.path.join(TEMPLATES, "qwen2_5_training.jinja")) as src, \
            open(os.path.join(model, "chat_template.jinja"), "w") as dst:
        dst.write(src.read())
    return model, tok.get_vocab_size()


def write_jsonl(name, rows):
    path = os.path.join(WORK, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
