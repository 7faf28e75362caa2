"""`lorafast model-grad --method fast --degree g` on a Llama model (grouped-query
heads, rotary embeddings) against torch autograd through transformers + PEFT whose
attention is the Taylor surrogate, written out below in float64 from its definition
(fast_attention.hpp) and registered as a transformers attention implementation:
per sequence and K/V head, centre c = the mean of the first min(C, T) rotated keys
(C = 128, the causal chunk), s_ij = scale q_i . (k_j - c),
    w_ij = exp(s_ij)   if j <= i and j is in i's chunk,
    w_ij = T_g(s_ij)   if j is in an earlier chunk (T_g = sum_{n <= g} s^n / n!),
    w_ij = 0           otherwise,
O = (w / rowsum w) V. T = 160 > C, so both kinds of weight occur. Checked: the loss
and every LoRA gradient, and that the surrogate loss differs from the exact one (a
model-grad that ignored --method would fail).

Tolerance model (DESIGN.md rule 5): relative error <= 1e-10 per tensor, the
model-grad bound of test_llama_interop.py: the same function in IEEE double; the
feature-map evaluation of T_g reorders the sums (measured worst 2.5e-15).
"""

import argparse
import math
import os
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import peft  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import test_llama_interop as interop  # noqa: E402
from test_llama_interop import check, rel, run  # noqa: E402

T = 160
CHUNK = 128  # cost_model.hpp causal_chunk
DEGREE = {"value": 4}


def surrogate_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """query [N, H, T, E], key and value [N, K, T, E] -> ([N, T, H, E], None)."""
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    t = query.shape[2]
    centre = key[:, :, : min(CHUNK, t)].mean(dim=2, keepdim=True)
    s = scaling * query @ (key - centre).transpose(-1, -2)
    taylor = sum(s ** n / math.factorial(n) for n in range(DEGREE["value"] + 1))
    i = torch.arange(t)[:, None]
    j = torch.arange(t)[None, :]
    same_chunk = (i // CHUNK == j // CHUNK) & (j <= i)
    earlier = j // CHUNK < i // CHUNK
    w = torch.where(same_chunk, torch.exp(s), torch.where(earlier, taylor, torch.zeros_like(s)))
    out = (w / w.sum(-1, keepdim=True)) @ value
    return out.transpose(1, 2).contiguous(), None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorafast", required=True)
    lf = ap.parse_args().lorafast
    transformers.AttentionInterface.register("lorafast_surrogate", surrogate_attention)
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "llama")
        model, cls = interop.build("llama", seed=11, max_position_embeddings=256, tie_word_embeddings=False)
        with torch.no_grad():  # moderate scores, as fine-tuning sees them; the surrogate is defined for any
            for name, p in model.named_parameters():
                if "q_proj" in name or "k_proj" in name:
                    p.mul_(0.5)
        model.save_pretrained(d)
        torch.manual_seed(2)
        cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False,
                              lora_dropout=0.0)
        adir = os.path.join(tmp, "adapter")
        peft.get_peft_model(interop.load_oracle(cls, d), cfg).save_pretrained(adir)
        rng = np.random.default_rng(3)
        x = torch.tensor(rng.integers(0, 256, (2, T + 1)), dtype=torch.long)
        tok_path = os.path.join(tmp, "tokens")
        with open(tok_path, "w") as f:
            f.write("".join(" ".join(map(str, row)) + "\n" for row in x.tolist()))

        def model_grad(*method):
            path = os.path.join(tmp, "grads-%s.safetensors" % "-".join(map(str, method)))
            run(lf, "model-grad", "--model", d, "--adapter", adir, "--tokens", tok_path, "--out", path, "--dtype",
                "f64", *method)
            return load_file(path)

        exact = model_grad("--method", "exact")["loss"].item()
        for degree in (2, 4):
            DEGREE["value"] = degree
            ours = model_grad("--method", "fast", "--degree", degree)
            pm = peft.PeftModel.from_pretrained(interop.load_oracle(cls, d, attn="lorafast_surrogate"), adir,
                                                is_trainable=True)
            with interop.float64_transformers():
                logits = pm(input_ids=x[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
            loss.backward()
            got = ours["loss"].item()
            check(rel(got, loss.item()) <= interop.GRAD_REL and rel(got, exact) > 1e-8,
                  "degree %d: surrogate loss %.15g vs oracle %.15g (rel %.1e); exact %.15g (rel %.1e)"
                  % (degree, got, loss.item(), rel(got, loss.item()), exact, rel(got, exact)))
            worst, count = 0.0, 0
            for pname, p in pm.named_parameters():
                if "lora_" not in pname:
                    continue
                key = pname.replace(".default", "")
                g = p.grad.double()
                worst = max(worst, (torch.linalg.norm(ours[key] - g) / torch.linalg.norm(g)).item())
                count += 1
            check(count > 0 and worst <= interop.GRAD_REL and len(ours) == count + 1,
                  "degree %d: %d LoRA gradients vs autograd of the surrogate: worst rel %.1e" % (degree, count, worst))
    if interop.failures:
        print("%d failure(s)" % len(interop.failures))
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
