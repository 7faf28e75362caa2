#!/usr/bin/env python3
"""The TRL side of sft_vs_trl.py: one process per measurement, one JSON object printed.

prepare: times the construction of trl.SFTTrainer(model=<the tiny model>,
  args=SFTConfig(max_length=--seq-len, packing=True (bfd), dataset_num_proc=None, ...),
  train_dataset=<datasets.Dataset of the JSONL>, processing_class=<the tokenizer>) on one
  process: the chat template rendered per conversation, tokenization, the packing and
  Trainer's own setup. Loading the JSONL into a Dataset (load_dataset("json")) is timed
  separately (`load_seconds`), tokenizer and model loading and the imports are not timed.
  The datasets cache is a fresh directory of this process (--cache-dir, which the caller
  makes empty) and caching is disabled, so every round really prepares. --dump writes the
  packed rows (input_ids, labels, seq_lengths) as JSON lines for the comparison with
  `lorafast prepare`; --save writes the packed Dataset (save_to_disk) for the train mode.

train: LoRA fine-tuning with SFTTrainer on a packed Dataset saved by prepare (so the
  preparation is not repeated per side; dataset_kwargs skip_prepare_dataset: the rows
  are TRL's own), packing bfd and so padding-free batches (TRL's default), LoRA via
  peft_config, AdamW (TRL's default optimizer) at a constant learning rate, clip 1.
  --precision f32 (bf16=False), autocast (bf16=True: the f32 model under bf16 autocast)
  or bf16 (the model loaded with dtype=torch.bfloat16, bf16=True), attention sdpa or eager,
  gradient checkpointing on or off: --sides lists these (the benchmark gives one per
  process; its --quick smoke test all in one, to pay the imports once). Each update is timed
  by a TrainerCallback (time.perf_counter at on_step_begin / on_step_end: forward,
  backward, clip, AdamW, scheduler), and training_step records the tokens it got (the
  padding-free batch's length: real tokens only) and its loss.
"""
import argparse
import json
import os
import sys
import time
import warnings


def quiet():
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    import datasets
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def config(args, **extra):
    import trl
    return trl.SFTConfig(output_dir=os.path.join(args.cache_dir, "trl_out"), max_length=args.seq_len, packing=True,
                         packing_strategy="bfd", dataset_num_proc=None, report_to="none", use_cpu=True,
                         save_strategy="no", disable_tqdm=True, seed=args.seed, **extra)


def prepare(args):
    import datasets
    import torch
    import transformers
    import trl
    datasets.disable_caching()
    tok = transformers.AutoTokenizer.from_pretrained(args.model)
    model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    sft_args = config(args, bf16=False)
    t0 = time.perf_counter()
    data = datasets.load_dataset("json", data_files=args.data, split="train", cache_dir=args.cache_dir)
    t1 = time.perf_counter()
    trainer = trl.SFTTrainer(model=model, args=sft_args, train_dataset=data, processing_class=tok)
    t2 = time.perf_counter()
    packed = trainer.train_dataset
    if args.dump:
        with open(args.dump, "w") as f:
            for row in packed:
                f.write(json.dumps({"input_ids": row["input_ids"], "labels": row.get("labels", row["input_ids"]),
                                    "seq_lengths": row["seq_lengths"]}) + "\n")
    if args.save:
        packed.save_to_disk(args.save)
    print(json.dumps({"load_seconds": t1 - t0, "seconds": t2 - t1, "rows": len(packed), "examples": len(data),
                      "columns": packed.column_names, "trl": trl.__version__, "datasets": datasets.__version__,
                      "transformers": transformers.__version__, "torch": torch.__version__}))


def train(args):
    """Every --sides spec in turn in this process (one, except for a smoke test); one JSON list printed."""
    import datasets
    import peft
    import torch
    import transformers
    import trl
    datasets.disable_caching()
    torch.set_num_threads(args.threads)
    tok = transformers.AutoTokenizer.from_pretrained(args.model)
    data = datasets.load_from_disk(args.packed)
    results = []
    for spec in json.loads(args.sides):
        torch.manual_seed(args.seed)
        precision = spec["precision"]
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        model = transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype,
                                                                  attn_implementation=spec["attn"])
        lora = peft.LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0, target_modules=args.targets,
                               task_type="CAUSAL_LM")
        sft_args = config(args, bf16=precision != "f32", per_device_train_batch_size=args.batch,
                          max_steps=args.steps, learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0,
                          weight_decay=0.0, max_grad_norm=1.0, logging_steps=10 ** 9,
                          gradient_checkpointing=bool(spec.get("gc")),
                          dataset_kwargs={"skip_prepare_dataset": True})
        begins, seconds, tokens, losses = [], [], [], []

        class StepTimer(transformers.TrainerCallback):
            def on_step_begin(self, *a, **k):
                begins.append(time.perf_counter())

            def on_step_end(self, *a, **k):
                seconds.append(time.perf_counter() - begins[-1])

        class Trainer(trl.SFTTrainer):
            def training_step(self, model, inputs, *a, **k):
                mask = inputs.get("attention_mask")  # none in padding-free batches: every token is real
                tokens.append(int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel()))
                loss = super().training_step(model, inputs, *a, **k)
                losses.append(float(loss))
                return loss

        trainer = Trainer(model=model, args=sft_args, train_dataset=data, processing_class=tok, peft_config=lora,
                          callbacks=[StepTimer()])
        trainable = [p for p in trainer.model.parameters() if p.requires_grad]
        frozen = next(p for p in trainer.model.parameters() if not p.requires_grad)
        trainer.train()
        results.append({"seconds": seconds, "tokens": tokens, "losses": losses,
                        "torch_threads": torch.get_num_threads(), "adapter_dtype": str(trainable[0].dtype),
                        "frozen_dtype": str(frozen.dtype), "optim": str(sft_args.optim), "trl": trl.__version__,
                        "peft": peft.__version__, "transformers": transformers.__version__,
                        "torch": torch.__version__})
        del trainer, model
    print(json.dumps(results))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["prepare", "train"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", help="prepare: the JSONL")
    ap.add_argument("--packed", help="train: the packed Dataset prepare --save wrote")
    ap.add_argument("--cache-dir", required=True, help="a fresh, empty scratch directory (the datasets cache)")
    ap.add_argument("--dump", help="prepare: write the packed rows here (JSON lines)")
    ap.add_argument("--save", help="prepare: save_to_disk the packed Dataset here")
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--targets", nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj"])
    ap.add_argument("--sides", default='[{"attn": "sdpa", "precision": "f32"}]',
                    help='train: a JSON list of {"attn": sdpa|eager, "precision": f32|autocast|bf16, "gc": bool}, '
                         'run one after the other')
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    quiet()
    if args.mode == "prepare":
        import torch
        torch.set_num_threads(args.threads)
        prepare(args)
    else:
        train(args)


if __name__ == "__main__":
    sys.exit(main())
