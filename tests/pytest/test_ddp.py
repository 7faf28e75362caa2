"""torch.distributed DDP (gloo, loopback) over a PEFT LoRA GPT-2 whose attention is
lorafast's: two processes, each with half of every batch, end with the adapter one
process trains on the whole batch (INTERFACE.md "Python"; issue "import lorafast").

Tolerance (DESIGN.md rule 5): float64, adapter weights within 1e-10 relative. DDP
averages the two half-batch gradients, which equals the full batch's mean-loss
gradient up to the summation order (~1e-16 relative per step); 5 SGD steps keep that
far below 1e-10, while a rank that dropped its gradient or ran another attention
would differ by > 1e-3.
"""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from peft import LoraConfig, get_peft_model
from torch.nn.parallel import DistributedDataParallel
from transformers import GPT2Config, GPT2LMHeadModel

import lorafast.transformers as lft

STEPS, BATCH, LENGTH, VOCAB = 5, 4, 24, 64


def tiny_model():
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=VOCAB, n_positions=32, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, attn_implementation="sdpa")
    model = get_peft_model(GPT2LMHeadModel(config).double(),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True,
                                      lora_dropout=0.0))
    for name, p in model.named_parameters():  # B != 0: every adapter gradient matters from step 1
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    return lft.enable(model, method="exact")


def batches():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, VOCAB, (BATCH, LENGTH), generator=g) for _ in range(STEPS)]


def train(model, rows):
    """SGD on `rows` of every batch; returns the adapter weights."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for tokens in batches():
        tokens = tokens[rows]
        logits = model(input_ids=tokens).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    return {n: p.detach().clone() for n, p in inner.named_parameters() if "lora_" in n}


def worker(rank, port, out):
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port, rank=rank, world_size=2)
    try:
        half = BATCH // 2
        weights = train(DistributedDataParallel(tiny_model()), slice(rank * half, (rank + 1) * half))
        if rank == 0:
            torch.save(weights, out)
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ddp_processes_give_the_single_process_adapter(tmp_path):
    out = str(tmp_path / "rank0.pt")
    mp.spawn(worker, args=(free_port(), out), nprocs=2, join=True)
    distributed = torch.load(out)
    single = train(tiny_model(), slice(0, BATCH))
    initial = {n: p.detach() for n, p in tiny_model().named_parameters() if "lora_" in n}
    assert distributed.keys() == single.keys() and single
    for name, want in single.items():
        got = distributed[name]
        assert float((got - want).norm()) <= 1e-10 * float(want.norm()), name
        assert float((want - initial[name]).norm()) > 1e-3 * float(want.norm()), name + " did not train"
