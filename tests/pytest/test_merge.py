"""lorafast.merge and `lorafast merge` (INTERFACE.md "Export") against the real
consumers: tiny random models written by transformers' save_pretrained, adapters
made by PEFT (init_lora_weights=False, so B != 0), for gpt2 (Conv1D, fan_in_fan_out),
llama (GQA, untied), qwen2 (q/k/v biases, tied, rsLoRA), mistral and qwen3 (q/k norms).
The merged directory loads with AutoModelForCausalLM.from_pretrained and gives the
logits of PeftModel on the unmerged pair.

Tolerance model (DESIGN.md rule 5):
- f64 output: relative error of the logits <= 1e-10. Both sides are transformers'
  own code in IEEE double on the same values (the f32 base and adapter are exact in
  f64); they differ only in x (W + s B A) against x W + s (x A) B, i.e. summation
  order (~1e-15 expected).
- f32 output: every merged weight is the exact merge rounded once, so within half
  an f32 ulp of the f64 merge (plus the f64 merge's own ~1e-16 relative error,
  which the ulp bound below absorbs: it allows 0.5 ulp of the next binade up).
- bf16 output: the same rule at bf16's ulp (we round once, from double). Against
  PyTorch's own bf16 merge (PEFT merge_and_unload on the base loaded in bf16: W
  rounded to bf16, then the delta added and rounded again) our merged weights are
  never farther from the exact merge in total (sum of absolute errors; each of ours
  is the nearest bf16 value, so this cannot fail by chance), and the logits' error
  against the f64 unmerged oracle is at most 1.25x PEFT's: the per-weight errors
  enter the logits with random signs, so a smaller total need not give smaller
  logits error on one input; the measured ratio is printed.
Hostile inputs (an adapter for another model, a GPT-2 adapter on a Llama model,
mismatched shapes, an existing output, unreadable and corrupt files): exit 3 (2 for
the existing output), one `lorafast: error:` line, and nothing written (no output
directory, no temporary directory left beside it).
"""

import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys

import pytest
import torch
import transformers
import peft
from safetensors.torch import load_file, save_file

import lorafast

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
from hf_random import randomize  # noqa: E402

torch.set_num_threads(1)
LLAMA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
KINDS = ["gpt2", "llama", "qwen2", "mistral", "qwen3"]


def cli():
    """The `lorafast` program of this build (beside <build>/python), else the installed one."""
    built = pathlib.Path(lorafast.__file__).resolve().parents[2] / "lorafast"
    found = str(built) if built.exists() else shutil.which("lorafast")
    assert found, "no lorafast program next to %s or on PATH" % lorafast.__file__
    return found


def build(kind, seed=0, **overrides):
    torch.manual_seed(seed)
    if kind == "gpt2":
        config = transformers.GPT2Config(vocab_size=256, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                         resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    else:
        common = dict(vocab_size=256, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5)
        common.update({"qwen2": dict(tie_word_embeddings=True), "qwen3": dict(head_dim=12, attention_bias=True)}
                      .get(kind, {}))
        common.update(overrides)
        config = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config,
                  "mistral": transformers.MistralConfig, "qwen3": transformers.Qwen3Config}[kind](**common)
    return randomize(transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager"))


def make_pair(tmp, kind, dtype=torch.float32, seed=0, tag="", **overrides):
    """(base dir, adapter dir): the model saved in `dtype`, a random PEFT adapter on it."""
    model = build(kind, seed, **overrides)
    base, adapter = tmp / (tag + kind + "-base"), tmp / (tag + kind + "-adapter")
    model.to(dtype).save_pretrained(base)
    if kind == "gpt2":
        lc = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True,
                             init_lora_weights=False, task_type="CAUSAL_LM")
    else:
        lc = peft.LoraConfig(r=4, lora_alpha=6, target_modules=LLAMA_MODULES, init_lora_weights=False,
                             use_rslora=kind == "qwen2", task_type="CAUSAL_LM")
    torch.manual_seed(seed + 1)
    peft.get_peft_model(build(kind, seed, **overrides), lc).save_pretrained(adapter)
    return base, adapter


def tokens(seed=3, n=2, length=20):
    return torch.randint(0, 256, (n, length), generator=torch.Generator().manual_seed(seed))


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.double()


def load(directory, dtype=torch.float64):
    return transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=dtype, attn_implementation="eager").eval()


def oracle(base, adapter):
    """PeftModel on the unmerged pair, in float64."""
    return peft.PeftModel.from_pretrained(load(base), adapter).eval()


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def exact_merge(base, adapter):
    """name -> W + s B A in float64 from the files, as PEFT defines it (transposed for Conv1D)."""
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    r = cfg["r"]
    s = cfg["lora_alpha"] / (r ** 0.5 if cfg.get("use_rslora") else r)
    w = {k: v.double() for k, v in load_file(base / "model.safetensors").items()}
    ab = load_file(adapter / "adapter_model.safetensors")
    for key in [k for k in ab if k.endswith("lora_A.weight")]:
        a, b = ab[key].double(), ab[key.replace("lora_A", "lora_B")].double()
        name = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
        delta = s * (b @ a)
        w[name] = w[name] + (delta.T if cfg.get("fan_in_fan_out") else delta)
    return w


def ulp(x, dtype):
    """The spacing of `dtype` values at |x|'s binade (next binade up for exact powers of two)."""
    y = x.abs().to(dtype).float()
    return (torch.nextafter(y.to(dtype), torch.tensor(float("inf"), dtype=dtype)).float() - y).double()


def assert_correctly_rounded(out_dir, exact, dtype):
    merged = load_file(out_dir / "model.safetensors")
    assert set(merged) == set(exact)
    for name, value in merged.items():
        assert value.dtype == dtype, name
        err = (value.double() - exact[name]).abs()
        assert (err <= 0.5 * ulp(exact[name], dtype)).all(), "%s: %g ulp" % (name, (err / ulp(exact[name], dtype)).max())


@pytest.mark.parametrize("kind", KINDS)
def test_merged_f64_gives_peft_logits(tmp_path, kind):
    base, adapter = make_pair(tmp_path, kind)
    tokenizer_files = {"tokenizer.json": '{"version": "1.0"}', "tokenizer_config.json": "{}",
                       "special_tokens_map.json": "{}", "chat_template.jinja": "{{ messages }}"}
    for name, text in tokenizer_files.items():
        (base / name).write_text(text)
    out = tmp_path / "merged"
    summary = lorafast.merge(base, adapter, out, dtype="f64")
    for name, text in tokenizer_files.items():   # copied as they are
        assert (out / name).read_text() == text
    assert summary["files"] == 1 and summary["merged"] == (8 if kind == "gpt2" else 14)
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "float64" and config["model_type"] == json.loads((base / "config.json").read_text())["model_type"]
    assert (out / "generation_config.json").read_bytes() == (base / "generation_config.json").read_bytes()
    ids = tokens()
    want = logits(oracle(base, adapter), ids)
    got = logits(load(out), ids)
    assert rel(got, want) <= 1e-10
    # the merge changed the model (a merge that dropped the adapter would fail here)
    assert rel(logits(load(base), ids), want) > 1e-3


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_f32_merge_is_rounded_once(tmp_path, kind):
    base, adapter = make_pair(tmp_path, kind)
    out = tmp_path / "merged"
    assert lorafast.merge(base, adapter, out)["dtype"] == "f32"  # the base's
    assert_correctly_rounded(out, exact_merge(base, adapter), torch.float32)
    ids = tokens()
    assert rel(logits(load(out), ids), logits(oracle(base, adapter), ids)) <= 1e-5  # f32 weights: ~100 f32 ulps


@pytest.mark.parametrize("kind", ["llama", "qwen3"])
def test_bf16_merge_against_pytorch_bf16_merge(tmp_path, kind):
    base, adapter = make_pair(tmp_path, kind)
    out = tmp_path / "merged"
    subprocess.run([cli(), "merge", "--model", base, "--adapter", adapter, "--out", out, "--dtype", "bf16"],
                   check=True, capture_output=True)
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    exact = exact_merge(base, adapter)
    assert_correctly_rounded(out, exact, torch.bfloat16)
    # PyTorch's own: PEFT's merge_and_unload on the base loaded in bf16
    theirs = peft.PeftModel.from_pretrained(load(base, torch.bfloat16), adapter).merge_and_unload()
    ours = load(out, torch.bfloat16)
    ours_w, theirs_w = dict(ours.named_parameters()), dict(theirs.named_parameters())
    total = lambda w: sum((w[n].double() - exact[n]).abs().sum().item() for n in exact if n in w)
    assert total(ours_w) <= total(theirs_w)
    ids = tokens()
    want = logits(oracle(base, adapter), ids)
    ours_err = rel(logits(ours.double(), ids), want)
    theirs_err = rel(logits(theirs.double(), ids), want)
    print("%s bf16 logits error: lorafast %.3g, PEFT merge_and_unload %.3g" % (kind, ours_err, theirs_err))
    assert ours_err <= 1.25 * theirs_err


def test_bf16_base_merges_in_bf16(tmp_path):
    base, adapter = make_pair(tmp_path, "mistral", dtype=torch.bfloat16)
    out = tmp_path / "merged"
    assert lorafast.merge(base, adapter, out)["dtype"] == "bf16"
    assert_correctly_rounded(out, exact_merge(base, adapter), torch.bfloat16)


@pytest.mark.parametrize("kind", ["gpt2", "qwen2"])
def test_sharded_like_save_pretrained(tmp_path, kind):
    base, adapter = make_pair(tmp_path, kind)
    # the base itself sharded by transformers: the merge reads the index too
    sharded_base = tmp_path / "sharded-base"
    load(base, torch.float32).save_pretrained(sharded_base, max_shard_size="20KB")
    assert (sharded_base / "model.safetensors.index.json").exists()
    out = tmp_path / "merged"
    summary = lorafast.merge(sharded_base, adapter, out, dtype="f64", max_shard_size="20KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert summary["files"] == len(files) > 1 and not (out / "model.safetensors").exists()
    assert files == ["model-%05d-of-%05d.safetensors" % (i + 1, len(files)) for i in range(len(files))]
    sizes = {f: {k: v.numel() * 8 for k, v in load_file(out / f).items()} for f in files}
    assert index["metadata"]["total_size"] == sum(sum(s.values()) for s in sizes.values())
    for f, s in sizes.items():  # each shard within the limit unless it holds one larger tensor alone
        assert sum(s.values()) <= 20000 or len(s) == 1, f
    assert {k for s in sizes.values() for k in s} == set(index["weight_map"])
    ids = tokens()
    assert rel(logits(load(out), ids), logits(oracle(base, adapter), ids)) <= 1e-10


def run_cli(*args):
    return subprocess.run([cli(), "merge", *map(str, args)], capture_output=True, text=True)


def assert_refused(p, code, out, *words):
    assert p.returncode == code, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lorafast: error:"), p.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert not out.exists()
    assert not [x for x in out.parent.iterdir() if x.name.startswith("." + out.name)], "temporary left behind"


def test_hostile_inputs(tmp_path):
    base, adapter = make_pair(tmp_path, "llama")
    out = tmp_path / "merged"
    # an adapter for another model: wider layers
    _, other_adapter = make_pair(tmp_path, "llama", tag="wide-", hidden_size=48)
    assert_refused(run_cli("--model", base, "--adapter", other_adapter, "--out", out), 3, out, "adapter_model.safetensors")
    # a GPT-2 adapter on a Llama model
    _, gpt_adapter = make_pair(tmp_path, "gpt2")
    assert_refused(run_cli("--model", base, "--adapter", gpt_adapter, "--out", out), 3, out, "not supported by a llama model")
    # mismatched shapes: a checkpoint whose q_proj is not what config.json says
    bad_base = tmp_path / "bad-base"
    shutil.copytree(base, bad_base)
    w = load_file(bad_base / "model.safetensors")
    w["model.layers.1.self_attn.q_proj.weight"] = w["model.layers.1.self_attn.q_proj.weight"][:, :16].contiguous()
    save_file(w, bad_base / "model.safetensors", metadata={"format": "pt"})
    assert_refused(run_cli("--model", bad_base, "--adapter", adapter, "--out", out), 3, out,
                   "model.layers.1.self_attn.q_proj.weight")
    # a corrupt (truncated) shard and a missing adapter file
    cut = tmp_path / "cut-base"
    shutil.copytree(base, cut)
    data = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert_refused(run_cli("--model", cut, "--adapter", adapter, "--out", out), 3, out, "model.safetensors")
    gone = tmp_path / "no-weights-adapter"
    shutil.copytree(adapter, gone)
    (gone / "adapter_model.safetensors").unlink()
    assert_refused(run_cli("--model", base, "--adapter", gone, "--out", out), 3, out, "adapter_model.safetensors")
    # a header that runs past the end of the file
    (cut / "model.safetensors").write_bytes(struct.pack("<Q", 1 << 20) + b"{}")
    assert_refused(run_cli("--model", cut, "--adapter", adapter, "--out", out), 3, out, "header length")
    # an existing output is left alone without --force, replaced with it
    out.mkdir()
    (out / "keep").write_text("x")
    p = run_cli("--model", base, "--adapter", adapter, "--out", out)
    assert p.returncode == 2 and p.stderr.startswith("lorafast: error:") and "--force" in p.stderr, p.stderr
    assert sorted(os.listdir(out)) == ["keep"]
    p = run_cli("--model", base, "--adapter", adapter, "--out", out, "--force")
    assert p.returncode == 0, p.stderr
    assert not (out / "keep").exists() and (out / "model.safetensors").exists()
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith(".merged")] == []
    # Python: the same errors as ValueError
    with pytest.raises(ValueError, match="already exists"):
        lorafast.merge(base, adapter, out)
    with pytest.raises(ValueError, match="dtype"):
        lorafast.merge(base, adapter, tmp_path / "y", dtype="f16")
