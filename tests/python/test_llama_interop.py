"""Llama-family models (llama, qwen2, mistral) and GPT-2 against the real Hugging
Face transformers and PEFT: tiny random models written by transformers' own
save_pretrained (in a temporary directory, no hub access), then

(a) `lorafast eval --json` equals transformers' mean next-token cross-entropy on
    the same windows (T + 1 bytes, stride T);
(b) an adapter made by PEFT (LoraConfig, init_lora_weights=False so B != 0) and
    written by its save_pretrained loads in lorafast and gives PEFT's loss;
(c) an adapter trained by `lorafast finetune` (3 steps) loads with
    PeftModel.from_pretrained and gives `lorafast eval`'s loss;
(d) `lorafast model-grad` LoRA gradients equal torch autograd through
    transformers + PEFT;
and hostile model directories exit 3 with one `lorafast: error:` line naming the file
(and the tensor, for a missing one or one of the wrong shape).

Also: a bf16 model (transformers' save_pretrained of model.to(bfloat16)) evaluates in
f32 and f64 as transformers does on the same bf16 weights upcast to float64;
`finetune --resume` on a Llama model gives the straight run's adapter bit for bit;
`finetune --method fast` (certified) and `--method auto` run on a Llama model, the
fast step-1 loss within eps of the exact one.

Cases: Llama with GQA (tied, untied, llama3 rope scaling in transformers 5's
rope_parameters, linear scaling in transformers 4's rope_scaling spelling, head_dim
not hidden / heads, sharded weights), Qwen2 (q/k/v biases), Mistral, GPT-2, and
sliding windows shorter than the T = 16 tokens of a window: Mistral's on every layer,
Qwen2's on the layers from max_window_layers on (transformers' mask: query i sees
keys i - W < j <= i).

The oracle in float64: transformers computes RMSNorm, the rotary frequencies and
the eager softmax in float32 whatever the model dtype (`.to(torch.float32)`,
`dtype=torch.float`); `float64_transformers()` makes those names mean float64 while
the rotary embedding is built and the model runs, so the oracle is transformers'
own code in IEEE double.
The cross-entropy is taken from its logits in float64 (its loss helper upcasts to
float32 only).

Tolerance model (DESIGN.md rule 5):
- f64 loss: relative error <= 1e-10, as test_gpt_vs_torch.py: the same function in
  IEEE double, differing only in summation order (~1e-14 expected).
- f32 loss vs the f64 oracle: <= 1e-5 relative, test_finetune_cli.py's f32 rule
  (~100 f32 ulps; the loss is a mean of log-sum-exps accumulated in double).
- f64 LoRA gradients: relative Frobenius error <= 1e-10 per tensor, the model-grad
  bound of test_gpt_vs_torch.py (same function, different summation order).
- bf16: every bf16 value is exactly an f32 (and f64) value, so lorafast computes on
  the very weights the upcast oracle does; the f64 and f32 rules above apply as they
  are.
- fast vs exact step-1 loss: relative <= eps (1e-3). The certificate bounds each
  layer's attention output and gradients by eps relative; the loss moves by
  <d loss / d o, d o> per layer, which on these tiny models (loss ~ log 256, outputs
  O(1)) is far below eps * loss (measured 1.6e-9 relative); a surrogate not run at all
  fails the other half of the check (the fast loss must differ from the exact one).
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers
import peft
from safetensors.torch import load_file, save_file

from hf_random import randomize

torch.set_num_threads(1)
T = 16          # predicted tokens per window
WINDOWS = 3
F64_REL = 1e-10
F32_REL = 1e-5
GRAD_REL = 1e-10
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


@contextlib.contextmanager
def float64_transformers():
    saved = torch.float32, torch.float
    torch.float32 = torch.float64
    torch.float = torch.float64
    try:
        yield
    finally:
        torch.float32, torch.float = saved


def run(lf, *args, expect=0, env=None):
    p = subprocess.run([lf, *map(str, args)], capture_output=True, text=True, env=env)
    if p.returncode != expect:
        raise AssertionError("%s: exit %d, expected %d\n%s%s" % (" ".join(map(str, args)), p.returncode, expect,
                                                                  p.stdout, p.stderr))
    return p


def build(kind, seed, **overrides):
    """A random tiny model of `kind` (transformers config + class), norms and biases random too."""
    torch.manual_seed(seed)
    common = dict(vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  rms_norm_eps=1e-5)
    if kind == "gpt2":
        config = transformers.GPT2Config(vocab_size=256, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                         resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
        cls = transformers.GPT2LMHeadModel
    else:
        common.update(overrides)
        config, cls = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
                       "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
                       "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM)}[kind]
        config = config(**common)
    return randomize(cls(config)), cls


def load_oracle(cls, directory, attn="eager"):
    """The model in float64, its rotary frequencies recomputed by transformers in float64."""
    model = cls.from_pretrained(directory, dtype=torch.float64, attn_implementation=attn).eval()
    for module in model.modules():
        if hasattr(module, "inv_freq"):
            with float64_transformers():
                module.__init__(module.config)
            assert module.inv_freq.dtype == torch.float64
    return model


def windows(data):
    ids = torch.tensor(list(data), dtype=torch.long)
    n = (len(ids) - 1) // T
    return torch.stack([ids[w * T: w * T + T + 1] for w in range(n)])


def oracle_loss(model, data):
    x = windows(data)
    with float64_transformers():
        logits = model(input_ids=x[:, :-1]).logits.double()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)).item()


def lf_eval(lf, model_dir, data_path, dtype="f64", adapter=None):
    args = ["eval", "--model", model_dir, "--data", data_path, "--seq-len", T, "--dtype", dtype, "--json"]
    if adapter:
        args += ["--adapter", adapter]
    return json.loads(run(lf, *args).stdout)["loss"]


def rel(a, b):
    return abs(a - b) / abs(b)


def peft_targets(kind):
    return ["c_attn", "c_fc"] if kind == "gpt2" else "all-linear"


def one_model(lf, tmp, name, kind, save_kwargs=None, config_edit=None, **overrides):
    d = os.path.join(tmp, name)
    model, cls = build(kind, seed=len(name), **overrides)
    model.save_pretrained(d, **(save_kwargs or {}))
    if config_edit:  # both sides read the edited file
        path = os.path.join(d, "config.json")
        with open(path) as f:
            c = json.load(f)
        config_edit(c)
        with open(path, "w") as f:
            json.dump(c, f)
    rng = np.random.default_rng(len(name))
    data = bytes(rng.integers(0, 256, WINDOWS * T + 1 + 5, dtype=np.uint8))
    data_path = os.path.join(tmp, name + ".bin")
    with open(data_path, "wb") as f:
        f.write(data)
    base = load_oracle(cls, d)
    want = oracle_loss(base, data)
    got = lf_eval(lf, d, data_path)
    check(rel(got, want) <= F64_REL, "%s (a) eval f64: %.15g vs transformers %.15g (rel %.1e)" % (name, got, want, rel(got, want)))
    got32 = lf_eval(lf, d, data_path, "f32")
    check(rel(got32, want) <= F32_REL, "%s (a) eval f32: rel %.1e" % (name, rel(got32, want)))

    # (b) a PEFT adapter with B != 0.
    torch.manual_seed(1)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=peft_targets(kind), init_lora_weights=False,
                          lora_dropout=0.0)
    pm = peft.get_peft_model(load_oracle(cls, d), cfg).eval()
    adir = os.path.join(tmp, name + "-peft")
    pm.save_pretrained(adir)
    want_b = oracle_loss(pm, data)
    got_b = lf_eval(lf, d, data_path, adapter=adir)
    check(rel(got_b, want_b) <= F64_REL and abs(want_b - want) > 1e-6,
          "%s (b) PEFT adapter: %.15g vs PEFT %.15g (rel %.1e; base %.6g)" % (name, got_b, want_b, rel(got_b, want_b), want))

    # (d) LoRA gradients against autograd.
    tok_path = os.path.join(tmp, name + ".tokens")
    x = windows(data)
    with open(tok_path, "w") as f:
        for row in x.tolist():
            f.write(" ".join(map(str, row)) + "\n")
    grads_path = os.path.join(tmp, name + "-grads.safetensors")
    run(lf, "model-grad", "--model", d, "--adapter", adir, "--tokens", tok_path, "--out", grads_path, "--dtype", "f64")
    ours = load_file(grads_path)
    pm.zero_grad()
    with float64_transformers():
        logits = pm(input_ids=x[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
    loss.backward()
    worst, count = 0.0, 0
    for pname, p in pm.named_parameters():
        if "lora_" not in pname:
            continue
        key = pname.replace(".default", "")
        if key not in ours:
            check(False, "%s (d) model-grad lacks %s" % (name, key))
            continue
        g = p.grad.double()
        worst = max(worst, (torch.linalg.norm(ours[key] - g) / torch.linalg.norm(g)).item())
        count += 1
    check(count > 0 and worst <= GRAD_REL and len(ours) == count + 1,
          "%s (d) %d LoRA gradients vs autograd: worst rel %.1e" % (name, count, worst))

    # (c) lorafast finetune -> PeftModel.from_pretrained.
    odir = os.path.join(tmp, name + "-ft")
    targets = ["attn.c_attn"] if kind == "gpt2" else ["all-linear"]
    run(lf, "finetune", "--model", d, "--data", data_path, "--out", odir, "--steps", 3, "--seq-len", T, "--batch", 2,
        "--rank", 4, "--alpha", 8, "--lr", 1e-2, "--dtype", "f64", "--eval-every", 0, "--targets", *targets)
    ours_c = lf_eval(lf, d, data_path, adapter=odir)
    trained = peft.PeftModel.from_pretrained(load_oracle(cls, d), odir).eval()
    theirs_c = oracle_loss(trained, data)
    check(rel(ours_c, theirs_c) <= F64_REL and abs(theirs_c - want) > 1e-9,
          "%s (c) finetuned adapter in PEFT: %.15g vs lorafast %.15g (rel %.1e)" % (name, theirs_c, ours_c, rel(ours_c, theirs_c)))
    return d, data_path


def expect_error(lf, args, code, needle, what):
    p = subprocess.run([lf, *map(str, args)], capture_output=True, text=True)
    lines = p.stderr.strip().splitlines()
    ok = p.returncode == code and len(lines) == 1 and lines[0].startswith("lorafast: error:") and needle in lines[0]
    check(ok, "%s: exit %d, %s" % (what, p.returncode, lines[-1] if lines else "no message"))


def hostile(lf, tmp, model_dir, data_path):
    import shutil

    def copy(name):
        d = os.path.join(tmp, name)
        shutil.copytree(model_dir, d)
        return d

    def edit_config(d, **changes):
        path = os.path.join(d, "config.json")
        with open(path) as f:
            c = json.load(f)
        c.update(changes)
        with open(path, "w") as f:
            json.dump(c, f)
        return path

    ev = lambda d: ["eval", "--model", d, "--data", data_path, "--seq-len", T, "--json"]
    d = copy("bad-type")
    expect_error(lf, ev(d), 3, edit_config(d, model_type="falcon"), "unknown model_type")
    d = copy("bad-kv")
    expect_error(lf, ev(d), 3, edit_config(d, num_key_value_heads=3), "kv heads not dividing heads")
    d = copy("bad-rope")
    expect_error(lf, ev(d), 3, edit_config(d, rope_parameters={"rope_type": "yarn", "factor": 2.0, "rope_theta": 1e4}),
                 "unknown rope type")
    d = copy("layer-types")
    edit_config(d, model_type="qwen2", use_sliding_window=True, sliding_window=4, layer_types=["sliding_attention"])
    expect_error(lf, ev(d), 3, "layer_types", "layer_types of the wrong length")
    d = copy("missing")
    path = os.path.join(d, "model.safetensors")
    tensors = load_file(path)
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, path)
    expect_error(lf, ev(d), 3, "model.layers.1.mlp.up_proj.weight", "missing tensor")
    d = copy("wrong-shape")
    path = os.path.join(d, "model.safetensors")
    tensors = load_file(path)
    tensors["model.layers.0.self_attn.k_proj.weight"] = tensors["model.layers.0.self_attn.k_proj.weight"][:, 1:].contiguous()
    save_file(tensors, path)
    p = subprocess.run([lf, *map(str, ev(d))], capture_output=True, text=True)
    expect_error(lf, ev(d), 3, path, "wrong-shape tensor names the file")
    check("model.layers.0.self_attn.k_proj.weight" in p.stderr and "shape" in p.stderr,
          "wrong-shape tensor names the tensor: %s" % p.stderr.strip())


def bf16_model(lf, tmp):
    name = "llama-bf16"
    d = os.path.join(tmp, name)
    model, cls = build("llama", seed=5)
    model.to(torch.bfloat16).save_pretrained(d)
    with open(os.path.join(d, "model.safetensors"), "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    check(dtypes == {"BF16"}, "%s: model file dtypes %s" % (name, dtypes))
    data = bytes(np.random.default_rng(5).integers(0, 256, WINDOWS * T + 1, dtype=np.uint8))
    data_path = os.path.join(tmp, name + ".bin")
    with open(data_path, "wb") as f:
        f.write(data)
    want = oracle_loss(load_oracle(cls, d), data)  # from_pretrained(dtype=float64) upcasts the bf16 values exactly
    for dtype, bound in (("f64", F64_REL), ("f32", F32_REL)):
        got = lf_eval(lf, d, data_path, dtype)
        check(rel(got, want) <= bound, "%s eval %s: %.15g vs transformers on the upcast weights %.15g (rel %.1e)"
              % (name, dtype, got, want, rel(got, want)))


def finetune_resume_and_methods(lf, tmp, model_dir, data_path):
    common = ["finetune", "--model", model_dir, "--data", data_path, "--steps", 4, "--seq-len", T, "--batch", 2,
              "--rank", 4, "--lr", 1e-2, "--eval-every", 0, "--save-every", 1, "--targets", "q_proj", "down_proj",
              "--threads", 2]
    a, b = os.path.join(tmp, "resume-a"), os.path.join(tmp, "resume-b")
    run(lf, *common, "--out", a)
    run(lf, *common, "--out", b, "--stop-after", 2)
    run(lf, "finetune", "--model", model_dir, "--data", data_path, "--out", b, "--resume", "--threads", 2)
    ta = load_file(os.path.join(a, "adapter_model.safetensors"))
    tb = load_file(os.path.join(b, "adapter_model.safetensors"))
    check(sorted(ta) == sorted(tb) and all(torch.equal(ta[k], tb[k]) for k in ta),
          "llama finetune: 4 steps == 2 + --resume 2, bit for bit")

    # A model whose q and k are scaled down, so that attention scores are small and fast certifies.
    import shutil
    small = os.path.join(tmp, "llama-small-scores")
    shutil.copytree(model_dir, small)
    path = os.path.join(small, "model.safetensors")
    tensors = load_file(path)
    for k in tensors:
        if "q_proj" in k or "k_proj" in k:
            tensors[k] = 0.05 * tensors[k]
    save_file(tensors, path, metadata={"format": "pt"})

    def step1(method, out):
        run(lf, "finetune", "--model", small, "--data", data_path, "--out", out, "--steps", 1, "--seq-len", T,
            "--batch", 2, "--rank", 4, "--eval-every", 0, "--method", method, "--eps", 1e-3, "--threads", 2)
        with open(os.path.join(out, "train_log.csv")) as f:
            loss = float(f.read().splitlines()[1].split(",")[1])
        with open(os.path.join(out, "attention_plan.csv")) as f:
            rows = f.read().splitlines()
        header = rows[0].split(",")
        methods = {dict(zip(header, r.split(",")))["method"] for r in rows[1:]}
        return loss, methods

    exact, _ = step1("exact", os.path.join(tmp, "m-exact"))
    fast, fast_methods = step1("fast", os.path.join(tmp, "m-fast"))
    auto, auto_methods = step1("auto", os.path.join(tmp, "m-auto"))
    check(fast_methods == {"fast"} and 0 < rel(fast, exact) <= 1e-3,
          "llama finetune --method fast: step-1 loss %.12g vs exact %.12g (rel %.1e), methods %s"
          % (fast, exact, rel(fast, exact), sorted(fast_methods)))
    check(auto_methods <= {"exact", "fast", "chained"} and rel(auto, exact) <= 1e-3,
          "llama finetune --method auto runs: step-1 loss rel %.1e, methods %s" % (rel(auto, exact), sorted(auto_methods)))


def sharded_escape(lf, tmp, sharded_dir, data_path):
    import shutil
    d = os.path.join(tmp, "escape")
    shutil.copytree(sharded_dir, d)
    index = os.path.join(d, "model.safetensors.index.json")
    with open(index) as f:
        j = json.load(f)
    first = sorted(j["weight_map"])[0]
    j["weight_map"][first] = "../" + j["weight_map"][first]
    with open(index, "w") as f:
        json.dump(j, f)
    expect_error(lf, ["eval", "--model", d, "--data", data_path, "--seq-len", T], 3, index, "shard outside the directory")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lorafast", required=True)
    lf = ap.parse_args().lorafast
    print("transformers %s, peft %s, torch %s" % (transformers.__version__, peft.__version__, torch.__version__))
    with tempfile.TemporaryDirectory() as tmp:
        llama_dir, data = one_model(lf, tmp, "llama-gqa-untied", "llama", tie_word_embeddings=False)
        one_model(lf, tmp, "llama-tied-llama3", "llama", tie_word_embeddings=True,
                  rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 16})
        def transformers4_rope(c):  # the spelling of transformers 4: rope_theta + rope_scaling with "type"
            del c["rope_parameters"]
            c["rope_theta"] = 2000.0
            c["rope_scaling"] = {"type": "linear", "factor": 4.0}
        one_model(lf, tmp, "llama-rope-scaling-linear", "llama", config_edit=transformers4_rope)
        sharded, sharded_data = one_model(lf, tmp, "llama-sharded-headdim", "llama", head_dim=12,
                                          attention_bias=True, save_kwargs={"max_shard_size": "20KB"})
        check(os.path.exists(os.path.join(sharded, "model.safetensors.index.json")), "sharded model has an index")
        one_model(lf, tmp, "qwen2-bias", "qwen2", num_key_value_heads=1)
        one_model(lf, tmp, "mistral", "mistral", sliding_window=None)
        one_model(lf, tmp, "mistral-window5", "mistral", sliding_window=5)
        one_model(lf, tmp, "qwen2-window3-layer1", "qwen2", use_sliding_window=True, sliding_window=3,
                  max_window_layers=1)
        one_model(lf, tmp, "gpt2", "gpt2")
        hostile(lf, tmp, llama_dir, data)
        bf16_model(lf, tmp)
        finetune_resume_and_methods(lf, tmp, llama_dir, data)
        sharded_escape(lf, tmp, sharded, sharded_data)
    if failures:
        print("%d failure(s)" % len(failures))
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
