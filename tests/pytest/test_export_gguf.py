"""`lorafast export gguf` read back by llama.cpp's own gguf-py (gguf.GGUFReader):
tiny random models written by transformers (with a byte-level BPE tokenizer.json
made by the tokenizers library and a chat template), adapters made by PEFT.
Checked: every key the converter writes for the architecture (hyperparameters,
tokenizer.ggml.*, the chat template), the tensor names and shapes, and every value:
f32 tensors equal the expected ones exactly (the checkpoint's, merged in f64 and
rounded once to f32, GPT-2's Conv1D transposed, Llama's q/k rows permuted by
convert_hf_to_gguf.py's own formula, copied here); f16/bf16/q8_0 tensors equal
gguf-py's quantization (gguf.quants.quantize, which llama.cpp's reference matches
bit for bit) of the f32 ones, byte for byte. The LoRA GGUF: general.type adapter,
adapter.type lora, adapter.lora.alpha (alpha * sqrt(r) under rsLoRA, so that
llama.cpp's alpha / r is PEFT's scale), A and B as PEFT stores them with B's rows
permuted for Llama's q/k.
Not yet here: llama.cpp itself loading the files (llama-cpp-python; issue #30).
"""

import json
import subprocess

import numpy as np
import pytest
import torch
import gguf
import tokenizers
from safetensors.torch import load_file

from test_merge import LLAMA_MODULES, cli, exact_merge, make_pair

MODEL_TYPE_ARCH = {"gpt2": "gpt2", "llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"


def add_tokenizer(directory):
    """A byte-level BPE over the 256 byte symbols with a few merges, GPT-2's split pattern, one special token."""
    symbols = sorted(tokenizers.pre_tokenizers.ByteLevel.alphabet())[:253]   # ids 253-255: two merges, one special
    vocab = {s: i for i, s in enumerate(symbols)}
    merges = [("Ġ", "t"), ("t", "h")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    tok.add_special_tokens([tokenizers.AddedToken("<|end|>", special=True)])
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|end|>", "bos_token": "<|end|>", "add_bos_token": False, "chat_template": TEMPLATE}))
    return json.loads((directory / "tokenizer.json").read_text())


def export(*args, expect=0):
    p = subprocess.run([cli(), "export", "gguf", *map(str, args)], capture_output=True, text=True)
    assert p.returncode == expect, p.stderr
    return p


def field(reader, key):
    f = reader.fields[key]
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[-1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode() for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode()
    return f.parts[f.data[0]][0].item()


def permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py's LlamaModel.permute, verbatim."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


NAMES = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
         "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
         "self_attn.k_norm": "attn_k_norm", "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate",
         "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down", "ln_1": "attn_norm", "attn.c_attn": "attn_qkv",
         "attn.c_proj": "attn_output", "ln_2": "ffn_norm", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
TOP = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
       "lm_head.weight": "output.weight", "transformer.wte.weight": "token_embd.weight",
       "transformer.wpe.weight": "position_embd.weight", "transformer.ln_f.weight": "output_norm.weight",
       "transformer.ln_f.bias": "output_norm.bias"}


def gguf_name(kind, name):
    """(GGUF name, HF module inside the block or None) of a checkpoint tensor (gguf-py's tensor names)."""
    if name in TOP:
        return TOP[name], None
    parts = name.split(".")
    i = parts.index("layers" if kind != "gpt2" else "h") + 1
    module = ".".join(parts[i + 1:-1])
    return "blk.%s.%s.%s" % (parts[i], NAMES[module], parts[-1]), module


def expected_tensors(kind, weights, config):
    """GGUF name -> float32 numpy array, as convert_hf_to_gguf.py would write it."""
    out = {}
    for name, w in weights.items():
        w = w.float().numpy()
        gg, module = gguf_name(kind, name)
        if kind == "gpt2" and gg.endswith(".weight") and module not in (None, "ln_1", "ln_2"):
            w = w.T.copy()
        if MODEL_TYPE_ARCH[kind] == "llama" and module == "self_attn.q_proj":
            w = permute(w, config["num_attention_heads"], config["num_attention_heads"])
        if MODEL_TYPE_ARCH[kind] == "llama" and module == "self_attn.k_proj":
            w = permute(w, config["num_attention_heads"], config["num_key_value_heads"])
        out[gg] = w
        if kind == "gpt2" and gg == "token_embd.weight":
            out["output.weight"] = w
    return out


def check_tensors(reader, expected, qtype):
    got = {t.name: t for t in reader.tensors}
    assert set(got) == set(expected)
    for name, want in expected.items():
        t = got[name]
        assert list(reversed([int(x) for x in t.shape])) == list(want.shape), name
        wanted_type = gguf.GGMLQuantizationType.F32 if want.ndim < 2 else qtype
        if wanted_type == gguf.GGMLQuantizationType.Q8_0 and want.shape[-1] % 32:
            wanted_type = gguf.GGMLQuantizationType.F16   # the converter's fallback
        assert t.tensor_type == wanted_type, name
        if wanted_type == gguf.GGMLQuantizationType.F32:
            assert np.array_equal(np.asarray(t.data).reshape(want.shape), want), name
        else:
            ref = gguf.quants.quantize(want, wanted_type)
            assert np.asarray(t.data).tobytes() == ref.tobytes(), name


@pytest.mark.parametrize("kind", ["gpt2", "llama", "qwen2", "mistral", "qwen3"])
def test_model_with_adapter_merged(tmp_path, kind):
    overrides = {"qwen3": dict(attention_bias=False)}.get(kind, {})
    base, adapter = make_pair(tmp_path, kind, **overrides)
    tok = add_tokenizer(base)
    out = tmp_path / "model.gguf"
    export("--model", base, "--adapter", adapter, "--out", out)
    r = gguf.GGUFReader(out)
    config = json.loads((base / "config.json").read_text())
    arch = MODEL_TYPE_ARCH[kind]
    assert field(r, "general.architecture") == arch and field(r, "general.type") == "model"
    n_embd = config.get("hidden_size", config.get("n_embd"))
    assert field(r, arch + ".embedding_length") == n_embd
    assert field(r, arch + ".block_count") == config.get("num_hidden_layers", config.get("n_layer"))
    assert field(r, arch + ".context_length") == config.get("max_position_embeddings", config.get("n_positions"))
    if kind != "gpt2":
        assert field(r, arch + ".attention.head_count_kv") == config["num_key_value_heads"]
        assert field(r, arch + ".feed_forward_length") == config["intermediate_size"]
        assert field(r, arch + ".rope.dimension_count") == config.get("head_dim") or n_embd // config["num_attention_heads"]
        assert np.float32(field(r, arch + ".attention.layer_norm_rms_epsilon")) == np.float32(config["rms_norm_eps"])
    tokens = field(r, "tokenizer.ggml.tokens")
    assert len(tokens) == 256 and field(r, "tokenizer.ggml.model") == "gpt2" and field(r, "tokenizer.ggml.pre") == "gpt-2"
    for t, i in tok["model"]["vocab"].items():
        assert tokens[i] == t
    assert tokens[255] == "<|end|>" and field(r, "tokenizer.ggml.token_type")[255] == 3
    assert field(r, "tokenizer.ggml.merges") == [" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]]
    assert field(r, "tokenizer.ggml.eos_token_id") == 255 and field(r, "tokenizer.ggml.add_bos_token") is False
    assert field(r, "tokenizer.chat_template") == TEMPLATE
    check_tensors(r, expected_tensors(kind, {k: v.float() for k, v in exact_merge(base, adapter).items()}, config),
                  gguf.GGMLQuantizationType.F32)


def test_llama3_rope_factors(tmp_path):
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    base, _ = make_pair(tmp_path, "llama", rope_parameters=rope, head_dim=16)
    add_tokenizer(base)
    out = tmp_path / "model.gguf"
    export("--model", base, "--out", out)
    t = {t.name: t for t in gguf.GGUFReader(out).tensors}["rope_freqs.weight"]
    # convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors, verbatim but for the names
    import math
    dim, base_ = 16, rope["rope_theta"]
    freqs = 1.0 / (base_ ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    low, high, old = rope["low_freq_factor"], rope["high_freq_factor"], rope["original_max_position_embeddings"]
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            factors.append(1)
        elif wavelen > old / low:
            factors.append(rope["factor"])
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / rope["factor"] + smooth))
    want = torch.tensor(factors, dtype=torch.float32).numpy()
    # f32 pow of torch and of the C library may differ by an ulp in a frequency; the
    # factor is smooth in it, so the factors agree to a few f32 ulps
    assert np.allclose(np.asarray(t.data), want, rtol=1e-6, atol=0), (np.asarray(t.data), want)
    assert len(set(np.round(want, 3))) > 2   # the case covers all three branches


@pytest.mark.parametrize("qtype", ["f16", "bf16", "q8_0"])
def test_types_as_gguf_py_quantizes(tmp_path, qtype):
    base, adapter = make_pair(tmp_path, "llama")
    add_tokenizer(base)
    out = tmp_path / "model.gguf"
    export("--model", base, "--out", out, "--type", qtype)
    r = gguf.GGUFReader(out)
    assert field(r, "general.file_type") == {"f16": 1, "bf16": 32, "q8_0": 7}[qtype]
    config = json.loads((base / "config.json").read_text())
    check_tensors(r, expected_tensors("llama", load_file(base / "model.safetensors"), config),
                  gguf.GGMLQuantizationType[qtype.upper()])


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gpt2"])
def test_adapter_only(tmp_path, kind):
    base, adapter = make_pair(tmp_path, kind)
    out = tmp_path / "adapter.gguf"
    export("--model", base, "--adapter", adapter, "--adapter-only", "--out", out)
    r = gguf.GGUFReader(out)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    config = json.loads((base / "config.json").read_text())
    assert field(r, "general.type") == "adapter" and field(r, "adapter.type") == "lora"
    assert field(r, "general.architecture") == MODEL_TYPE_ARCH[kind]
    alpha = cfg["lora_alpha"] * (cfg["r"] ** 0.5 if cfg.get("use_rslora") else 1)
    assert np.isclose(field(r, "adapter.lora.alpha"), alpha, rtol=1e-7)  # stored as f32
    ab = load_file(adapter / "adapter_model.safetensors")
    expected = {}
    for key, w in ab.items():
        base_name = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight").replace(".lora_B.weight", ".weight")
        gg, _ = gguf_name(kind, base_name)
        w = w.float().numpy()
        if key.endswith("lora_B.weight") and MODEL_TYPE_ARCH[kind] == "llama":
            heads = config["num_attention_heads"]
            if ".q_proj." in key:
                w = permute(w, heads, heads)
            if ".k_proj." in key:
                w = permute(w, heads, config["num_key_value_heads"])
        expected[gg + (".lora_b" if key.endswith("lora_B.weight") else ".lora_a")] = w
    check_tensors(r, expected, gguf.GGMLQuantizationType.F32)


def test_refused(tmp_path):
    base, adapter = make_pair(tmp_path, "llama")
    out = tmp_path / "m.gguf"
    p = export("--model", base, "--out", out, expect=4)   # no tokenizer.json
    assert p.stderr.startswith("lorafast: error:") and "tokenizer.json" in p.stderr and len(p.stderr.splitlines()) == 1
    assert not out.exists()
    tok = add_tokenizer(base)
    tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    (base / "tokenizer.json").write_text(json.dumps(tok))
    p = export("--model", base, "--out", out, expect=4)
    assert "split pattern" in p.stderr and not out.exists()
    add_tokenizer(base)
    out.write_text("keep")
    p = export("--model", base, "--out", out, expect=2)
    assert "--force" in p.stderr and out.read_text() == "keep"
    export("--model", base, "--out", out, "--force")
    assert gguf.GGUFReader(out).fields["general.architecture"]
    export("--model", base, "--out", tmp_path / "x.gguf", "--adapter-only", expect=2)
    _, wide_adapter = make_pair(tmp_path, "llama", tag="wide-", hidden_size=48)   # an adapter for another model
    for extra in ([], ["--adapter-only"]):
        p = export("--model", base, "--adapter", wide_adapter, "--out", tmp_path / "x.gguf", *extra, expect=3)
        assert p.stderr.startswith("lorafast: error:") and "adapter_model.safetensors" in p.stderr
    assert not (tmp_path / "x.gguf").exists()
    assert not list(tmp_path.glob(".*tmp*"))
