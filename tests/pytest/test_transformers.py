"""lorafast.transformers.enable on a tiny Hugging Face GPT-2 under PEFT LoRA: an
unchanged training loop gives the losses of transformers' own SDPA attention; so do
tiny Mistral and Qwen2 models whose sliding windows are shorter than the sequence,
their windowed layers run by lorafast.attention too (padding and cached decoding
still go to SDPA, with the window in the mask).

Tolerance model (DESIGN.md rule 5):
- float64: every step's loss within 1e-9 relative. Both runs are the same
  computation in IEEE double but for the attention's summation order (~1e-15
  relative per step); AdamW's update m / (sqrt(v) + eps) turns a gradient change
  dg into at most |dg| / eps-sized steps, so 20 steps stay orders below 1e-9, while
  a wrong mask or scale changes the first loss by > 1e-3.
- float32: within 1e-4 relative. The attention differs by a few float32 ulps
  (~1e-7) per call; over 20 AdamW steps at lr 1e-3 the parameters drift apart by
  at most about steps * lr * (relative gradient change), far below 1e-4 of the loss.
"""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import GPT2Config, GPT2LMHeadModel

import lorafast
import lorafast.transformers as lft


def tiny_gpt2(dtype):
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=64, n_positions=32, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, attn_implementation="sdpa")
    model = GPT2LMHeadModel(config).to(dtype)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True, lora_dropout=0.0)
    model = get_peft_model(model, lora)
    for name, p in model.named_parameters():  # B != 0, so every adapter gradient is exercised from step 1
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    return model


def train_losses(model, steps=20):
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, 64, (2, 24), generator=g) for _ in range(steps)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for tokens in batches:
        # The loss in the model's precision (transformers' own loss casts logits to float32).
        logits = model(input_ids=tokens).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_peft_training_matches_sdpa(dtype, tolerance, monkeypatch):
    calls = []
    real = lft.attention
    monkeypatch.setattr(lft, "attention", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    reference = train_losses(tiny_gpt2(dtype))
    assert not calls
    ours = train_losses(lft.enable(tiny_gpt2(dtype), method="exact"))
    assert len(calls) == 20 * 2, "lorafast.attention ran %d times, want once per layer and step" % len(calls)
    for step, (a, b) in enumerate(zip(ours, reference)):
        assert abs(a - b) <= tolerance * abs(b), (step, a, b)


def test_padding_mask_falls_back_to_sdpa():
    model = tiny_gpt2(torch.float64)
    tokens = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, :3] = 0
    with torch.no_grad():
        reference = model(input_ids=tokens, attention_mask=mask).logits
        ours = lft.enable(model, method="exact")(input_ids=tokens, attention_mask=mask).logits
    assert torch.allclose(ours, reference, rtol=0, atol=1e-12)


def test_enable_checks_its_arguments():
    with pytest.raises(ValueError, match="method must be one of"):
        lft.enable(tiny_gpt2(torch.float32), method="flash")
    with pytest.raises(ValueError, match="eps must be a positive number"):
        lft.enable(tiny_gpt2(torch.float32), eps=0)
    with pytest.raises(TypeError, match="PreTrainedModel"):
        lft.enable(torch.nn.Linear(2, 2))
    assert lorafast.transformers is lft


def tiny_windowed(kind, dtype):
    """A tiny Mistral (window 5 on every layer) or Qwen2 (window 3 on layer 1 only),
    both windows far shorter than the 24-token batches."""
    from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    common = dict(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, attn_implementation="sdpa")
    if kind == "mistral":
        model = MistralForCausalLM(MistralConfig(sliding_window=5, **common))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(use_sliding_window=True, sliding_window=3, max_window_layers=1, **common))
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    model = get_peft_model(model.to(dtype), lora)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    return model


@pytest.mark.parametrize("kind", ["mistral", "qwen2"])
def test_sliding_window_layers_run_in_lorafast(kind, monkeypatch):
    # Same tolerance as test_peft_training_matches_sdpa in float64; every layer (the
    # windowed ones included) runs lorafast.attention, with its window.
    calls = []
    real = lft.attention
    monkeypatch.setattr(lft, "attention", lambda *a, **k: calls.append(k["window"]) or real(*a, **k))
    reference = train_losses(tiny_windowed(kind, torch.float64), steps=5)
    ours = train_losses(lft.enable(tiny_windowed(kind, torch.float64), method="exact"), steps=5)
    assert calls == {"mistral": [5, 5], "qwen2": [None, 3]}[kind] * 5, calls
    for step, (a, b) in enumerate(zip(ours, reference)):
        assert abs(a - b) <= 1e-9 * abs(b), (step, a, b)


def test_sliding_window_with_padding_or_cache_falls_back_to_sdpa():
    model = tiny_windowed("mistral", torch.float64)
    tokens = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :3] = 0
    with torch.no_grad():
        reference = model(input_ids=tokens, attention_mask=mask).logits
        want = model.generate(input_ids=tokens[:1], max_new_tokens=10, do_sample=False)
        lft.enable(model, method="exact")
        ours = model(input_ids=tokens, attention_mask=mask).logits
        got = model.generate(input_ids=tokens[:1], max_new_tokens=10, do_sample=False)
    assert torch.allclose(ours, reference, rtol=0, atol=1e-12)
    assert torch.equal(got, want)


def tiny_llama(dtype, **extra):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                         attn_implementation="sdpa", **extra))
    model = get_peft_model(model.to(dtype), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                       lora_dropout=0.0))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    return model


def packed_loss_and_grads(model, tokens, positions):
    """A padding-free packed batch as TRL's collator makes it: position ids restart per
    document, no attention mask, no cache (transformers looks for documents only then);
    each document's first label masked."""
    labels = tokens.clone()
    labels[positions == 0] = -100
    logits = model(input_ids=tokens, position_ids=positions, use_cache=False).logits[:, :-1]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), labels[:, 1:].reshape(-1), ignore_index=-100)
    model.zero_grad()
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters() if p.requires_grad]


def test_packed_rows_run_in_lorafast(monkeypatch):
    # float64, as test_peft_training_matches_sdpa: one forward and backward, the same
    # computation but for the attention's summation order (~1e-15); attention across
    # documents would change the loss by > 1e-3.
    lengths = [7, 10, 1, 6]
    tokens = torch.randint(0, 64, (1, sum(lengths)), generator=torch.Generator().manual_seed(4))
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    want_loss, want_grads = packed_loss_and_grads(tiny_llama(torch.float64), tokens, positions)
    alone = sum(packed_loss_and_grads(tiny_llama(torch.float64), tokens[:, a:a + n], positions[:, a:a + n])[0] * (n - 1)
                for a, n in zip([0, 7, 17, 18], lengths) if n > 1) / (sum(lengths) - len(lengths))
    assert abs(want_loss - alone) <= 1e-12 * alone  # transformers' SDPA path: documents apart
    calls = []
    real = lft.attention
    monkeypatch.setattr(lft, "attention", lambda *a, **k: calls.append(k["cu_seqlens"]) or real(*a, **k))
    loss, grads = packed_loss_and_grads(lft.enable(tiny_llama(torch.float64), method="exact"), tokens, positions)
    assert calls == [[0, 7, 17, 18, 24]] * 2, calls
    assert abs(loss - want_loss) <= 1e-9 * want_loss, (loss, want_loss)
    for g, w in zip(grads, want_grads):
        assert torch.allclose(g, w, rtol=1e-9, atol=1e-12)


def test_packed_rows_with_a_sliding_window_run_in_lorafast(monkeypatch):
    # As test_packed_rows_run_in_lorafast, with Mistral's window of 5 inside each document.
    lengths = [9, 12, 3]
    tokens = torch.randint(0, 64, (1, sum(lengths)), generator=torch.Generator().manual_seed(5))
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    reference = tiny_windowed("mistral", torch.float64)
    want_loss, _ = packed_loss_and_grads(reference, tokens, positions)
    calls = []
    real = lft.attention
    monkeypatch.setattr(lft, "attention", lambda *a, **k: calls.append((k["window"], k["cu_seqlens"])) or real(*a, **k))
    loss, _ = packed_loss_and_grads(lft.enable(tiny_windowed("mistral", torch.float64), method="exact"), tokens,
                                    positions)
    assert calls == [(5, [0, 9, 21, 24])] * 2, calls
    assert abs(loss - want_loss) <= 1e-9 * want_loss, (loss, want_loss)


def sft_losses(model, directory, bf16):
    """Three steps of TRL's SFTTrainer with packing (bfd, padding-free) on a tiny text set,
    in float32 or under bf16 autocast (TRL's default where the CPU has bf16)."""
    import datasets
    import trl
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {chr(ord("a") + i): i for i in range(26)} | {"<eos>": 26, "<pad>": 27}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
    g = torch.Generator().manual_seed(6)
    texts = ["".join(chr(ord("a") + int(c)) for c in torch.randint(0, 26, (int(n),), generator=g))
             for n in torch.randint(2, 20, (40,), generator=g)]
    args = trl.SFTConfig(output_dir=directory, max_length=48, packing=True, per_device_train_batch_size=4,
                         max_steps=3, learning_rate=1e-3, logging_steps=1, report_to="none", use_cpu=True,
                         save_strategy="no", seed=0, dataloader_num_workers=0, bf16=bf16)
    trainer = trl.SFTTrainer(model=model, args=args, processing_class=tokenizer,
                             train_dataset=datasets.Dataset.from_dict({"text": texts}))
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_trl_packed_sft_runs_in_lorafast(monkeypatch, tmp_path):
    # float32: the rule of test_peft_training_matches_sdpa (1e-4). bf16 autocast: the
    # distance of each step's loss from the float32 run is at most twice SDPA's own
    # under autocast, plus 1e-3 of the loss (the two bf16 runs round differently; a
    # loss that drifted by more than bf16's own error would be a bug).
    want = sft_losses(tiny_llama(torch.float32), str(tmp_path / "sdpa"), bf16=False)
    want_bf16 = sft_losses(tiny_llama(torch.float32), str(tmp_path / "sdpa_bf16"), bf16=True)
    calls = []
    real = lft.attention
    monkeypatch.setattr(lft, "attention",
                        lambda *a, **k: calls.append((a[0].dtype, k["cu_seqlens"])) or real(*a, **k))
    got = sft_losses(lft.enable(tiny_llama(torch.float32), method="exact"), str(tmp_path / "lorafast"), bf16=False)
    assert len(calls) >= 3 * 2 and all(dtype == torch.float32 and len(c) > 3 for dtype, c in calls), calls
    assert len(got) == len(want) == 3
    for a, b in zip(got, want):
        assert abs(a - b) <= 1e-4 * abs(b), (got, want)
    calls.clear()
    got_bf16 = sft_losses(lft.enable(tiny_llama(torch.float32), method="exact"), str(tmp_path / "lorafast_bf16"),
                          bf16=True)
    assert len(calls) >= 3 * 2 and all(dtype == torch.bfloat16 for dtype, _ in calls), calls
    for ours, theirs, exact in zip(got_bf16, want_bf16, want):
        assert abs(ours - exact) <= 2 * abs(theirs - exact) + 1e-3 * abs(exact), (got_bf16, want_bf16, want)
