#!/usr/bin/env python3
"""Regenerates the tiny random-model fixtures in Tests/Fixtures/tiny/ (deterministically).

  python3 scripts/make_tiny_fixtures.py [--out Tests/Fixtures/tiny]

Needs no download: everything is built from seeds. Writes:
  llama/             LlamaForCausalLM, GQA, untied lm_head: config.json, model.safetensors (F32),
                     tokenizer.json (Digits + ByteLevel, "smollm" style, merges as "a b" strings),
                     tokenizer_config.json (ChatML template with a default system prompt)
  qwen2/             Qwen2ForCausalLM, q/k/v biases, tied embeddings; tokenizer.json with the
                     Qwen2 Split regex + ByteLevel(use_regex=False), merges as [a, b] pairs
  llama.gguf         llama/ converted like llama.cpp's convert_hf_to_gguf.py (Q/K permuted),
                     F32 except blk.0.ffn_* (F16) and blk.1.ffn_* (Q8_0)
  reference.json     per model: token-id cases with the logits at every position;
                     per tokenizer: ids of test strings
  quant_blocks.json  two blocks of raw bytes per ggml type and gguf-py's dequantization of them

The llama-gguf reference logits come from the HF llama model with the F16/Q8_0 tensors replaced
by their dequantized values, i.e. from exactly the numbers stored in llama.gguf.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import unicodedata

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BOS, EOS = "<|im_start|>", "<|im_end|>"
VOCAB_SIZE = 300  # 256 byte symbols + 41 merges + 3 specials
SYSTEM_PROMPT = "You are a tiny test model."

# SmolLM2's chat template with the default system prompt swapped for SYSTEM_PROMPT.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS, HEAD_DIM = 64, 96, 2, 4, 2, 16
ROPE_THETA, RMS_EPS, MAX_POS = 10000.0, 1e-5, 128
INIT_STD = 0.2

TOKENIZER_STRINGS = [
    "",
    "12 + 7 = 19",
    "What is 3*4?",
    "   42",
    "2024-11-25",
    "x\t\t7\n\n",
    "trailing spaces   ",
    "The answer is 1234567890.",
    "Caf\u00e9 na\u00efve \u00e9 vs e\u0301",
    "\u4f60\u597d\uff0c\u4e16\u754c \U0001F642",
    "x\u00b2 \u00bd \u0663\u0664 \uff13",
    "I'm sure they'LL say it's fine",
    "<|im_start|>user\nHi<|im_end|>\n",
    "text<|endoftext|>more <|im_end|> ",
    "<|im_start|",
    "\r\n  \n line",
    "Step 2:\n    12 + 7 = 19\n\n\n  done \n",
]


# ----------------------------------------------------------------------------------------------
# output helpers (same JSON style as make_fixtures.py)


from make_fixtures import dumps, write_text  # noqa: E402  (one JSON style for all fixtures)


def sig6(x: float) -> float:
    return float(f"{x:.6g}")


# ----------------------------------------------------------------------------------------------
# tokenizers


def training_corpus() -> list[str]:
    rng = random.Random(1234)
    words = {"+": "plus", "-": "minus", "*": "times"}
    lines = []
    for _ in range(400):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        op = rng.choice("+-*")
        c = a + b if op == "+" else a - b if op == "-" else a * b
        form = rng.randrange(7)
        if form == 0:
            lines.append(f"{a} {op} {b} = {c}")
        elif form == 1:
            lines.append(f"What is {a}{op}{b}?")
        elif form == 2:
            lines.append(f"The answer is {c}.")
        elif form == 3:
            lines.append(f"Question: what is {a} {words[op]} {b}? Answer: {c}")
        elif form == 4:
            lines.append(f"Let's compute {a} {op} {b}. First, {a} {words[op]} {b} equals {c}.")
        elif form == 5:
            lines.append(f"{a} {op} {b} = {c}, so the answer is {c}.")
        else:  # indentation and blank lines, so whitespace runs get merges too
            lines.append(f"Step {rng.randint(1, 9)}:\n    {a} {op} {b} = {c}\n\n")
    return lines


def build_tokenizer(kind: str):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(dropout=None, unk_token=None, fuse_unk=False, byte_fallback=False))
    if kind == "llama":
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
            ]
        )
        # SmolLM2 layout: the specials are ids 0..2 and also live in model.vocab.
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB_SIZE,
            min_frequency=2,
            show_progress=False,
            special_tokens=[AddedToken(s, special=True, normalized=False) for s in SPECIALS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    else:
        # Qwen2's tokenizer.json has an NFC normalizer, and transformers 5 maps model_type qwen2
        # to Qwen2Tokenizer, which rebuilds this exact pipeline (NFC included) whatever the file says.
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
            ]
        )
        # Qwen2 layout: the specials come after the BPE vocab and are only in added_tokens.
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB_SIZE - len(SPECIALS),
            min_frequency=2,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(training_corpus(), trainer=trainer)
    if kind != "llama":
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    assert tok.get_vocab_size(with_added_tokens=True) == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def tokenizer_json(tok, merges_as_strings: bool) -> str:
    d = json.loads(tok.to_str())
    merges = d["model"]["merges"]
    if merges_as_strings:
        d["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in merges]
    else:
        d["model"]["merges"] = [m.split(" ") if isinstance(m, str) else m for m in merges]
    return json.dumps(d, ensure_ascii=False, indent=2) + "\n"


def tokenizer_config(tok) -> dict:
    vocab = tok.get_vocab(with_added_tokens=True)
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(vocab[s]): {
                "content": s,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for s in SPECIALS
        },
        "bos_token": BOS,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS,
        "model_max_length": MAX_POS,
        "pad_token": EOS,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }


def render_chat(messages: list[dict]) -> str:
    """The template rendered with jinja2 (what transformers' apply_chat_template does)."""
    import jinja2

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=True)


# ----------------------------------------------------------------------------------------------
# models


def hf_config(kind: str, tok) -> dict:
    """Hub-style config.json (rope_theta at top level, as SmolLM2/Qwen2.5 ship it)."""
    vocab = tok.get_vocab(with_added_tokens=True)
    common = {
        "attention_dropout": 0.0,
        "bos_token_id": vocab[BOS],
        "eos_token_id": vocab[EOS],
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": INIT_STD,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": MAX_POS,
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": RMS_EPS,
        "rope_scaling": None,
        "rope_theta": ROPE_THETA,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": VOCAB_SIZE,
    }
    if kind == "llama":
        return {
            "architectures": ["LlamaForCausalLM"],
            "attention_bias": False,
            **common,
            "head_dim": HEAD_DIM,
            "mlp_bias": False,
            "model_type": "llama",
            "pretraining_tp": 1,
            "tie_word_embeddings": False,
        }
    # Qwen2 configs on the Hub carry no head_dim: it is hidden_size / num_attention_heads.
    return {
        "architectures": ["Qwen2ForCausalLM"],
        **common,
        "max_window_layers": LAYERS,
        "model_type": "qwen2",
        "sliding_window": None,
        "tie_word_embeddings": True,
        "use_sliding_window": False,
    }


def build_model(kind: str, cfg: dict):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    keys = dict(cfg)
    for k in ("architectures", "torch_dtype", "rope_scaling"):
        keys.pop(k, None)
    if kind == "llama":
        config = LlamaConfig(**keys)
        model_cls = LlamaForCausalLM
    else:
        config = Qwen2Config(**keys)
        model_cls = Qwen2ForCausalLM
    assert config.head_dim == HEAD_DIM if hasattr(config, "head_dim") else True

    torch.manual_seed(0)
    model = model_cls(config).to(torch.float32)
    model.eval()
    # Our own init, by sorted parameter name so it does not depend on module order.
    gen = torch.Generator().manual_seed(0 if kind == "llama" else 1)
    params = dict(model.named_parameters())  # tied lm_head appears once (as embed_tokens)
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * noise)
            else:  # weights and q/k/v biases
                p.copy_(INIT_STD * noise)
    if kind == "qwen2":
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    else:
        assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    return model


def save_safetensors(model, path: str) -> None:
    from safetensors.torch import save_file

    sd = model.state_dict()
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    sd = {k: v.detach().contiguous().clone() for k, v in sorted(sd.items())}
    save_file(sd, path, metadata={"format": "pt"})


# ----------------------------------------------------------------------------------------------
# GGUF


def permute(w, n_head: int, n_head_kv: int | None):
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def ffn_type(layer: int):
    from gguf import GGMLQuantizationType as T

    return {0: T.F16, 1: T.Q8_0}.get(layer, T.F32)


def write_gguf(model, tok, path: str) -> dict:
    """Writes llama.gguf; returns {hf_name: dequantized fp32 numpy array} for the non-F32 tensors."""
    import numpy as np
    import gguf
    from gguf import GGMLQuantizationType as T

    cfg = model.config
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(path, "llama", use_temp_file=False)
    # --- hparams, in convert_hf_to_gguf.py's order ---
    w.add_type("model")
    w.add_name("Ponder Tiny Llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(cfg.vocab_size)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    # --- tokenizer ---
    vocab = tok.get_vocab(with_added_tokens=True)
    id_to_tok = {i: t for t, i in vocab.items()}
    assert sorted(id_to_tok) == list(range(cfg.vocab_size))
    tokens = [id_to_tok[i] for i in range(cfg.vocab_size)]
    special_ids = {vocab[s] for s in SPECIALS}
    token_types = [gguf.TokenType.CONTROL if i in special_ids else gguf.TokenType.NORMAL for i in range(len(tokens))]
    merges = json.loads(tok.to_str())["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab[BOS])
    w.add_eos_token_id(vocab[EOS])
    w.add_pad_token_id(vocab[EOS])
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    # --- tensors ---
    dequant: dict[str, np.ndarray] = {}

    def add(gname: str, hf_name: str, qtype=T.F32, data=None):
        arr = sd[hf_name] if data is None else data
        if qtype == T.F32:
            w.add_tensor(gname, arr)
        elif qtype == T.F16:
            h = arr.astype(np.float16)
            w.add_tensor(gname, h)
            dequant[hf_name] = h.astype(np.float32)
        else:
            q = gguf.quants.quantize(arr, qtype)
            w.add_tensor(gname, q, raw_dtype=qtype)
            dequant[hf_name] = gguf.quants.dequantize(q, qtype).reshape(arr.shape)

    add("token_embd.weight", "model.embed_tokens.weight")
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        add(f"blk.{i}.attn_norm.weight", p + "input_layernorm.weight")
        add(f"blk.{i}.attn_q.weight", p + "self_attn.q_proj.weight",
            data=permute(sd[p + "self_attn.q_proj.weight"], cfg.num_attention_heads, cfg.num_attention_heads))
        add(f"blk.{i}.attn_k.weight", p + "self_attn.k_proj.weight",
            data=permute(sd[p + "self_attn.k_proj.weight"], cfg.num_attention_heads, cfg.num_key_value_heads))
        add(f"blk.{i}.attn_v.weight", p + "self_attn.v_proj.weight")
        add(f"blk.{i}.attn_output.weight", p + "self_attn.o_proj.weight")
        add(f"blk.{i}.ffn_norm.weight", p + "post_attention_layernorm.weight")
        add(f"blk.{i}.ffn_gate.weight", p + "mlp.gate_proj.weight", ffn_type(i))
        add(f"blk.{i}.ffn_up.weight", p + "mlp.up_proj.weight", ffn_type(i))
        add(f"blk.{i}.ffn_down.weight", p + "mlp.down_proj.weight", ffn_type(i))
    add("output_norm.weight", "model.norm.weight")
    add("output.weight", "lm_head.weight")

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()
    return dequant


def sd_numel(sd: dict, gguf_name: str) -> int:
    import numpy as np

    table = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
    if gguf_name.startswith("blk."):
        _, i, part, _ = gguf_name.split(".")
        hf = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
              "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
              "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
              "ffn_down": "mlp.down_proj"}[part]
        return int(np.prod(sd[f"model.layers.{i}.{hf}.weight"].shape))
    return int(np.prod(sd[table[gguf_name.split(".")[0]] + ".weight"].shape))


def check_gguf(path: str, model, dequant: dict) -> None:
    """Reads llama.gguf back and checks every tensor against the HF weights (after un-permuting)."""
    import numpy as np
    import gguf

    r = gguf.GGUFReader(path)
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    names = {t.name: t for t in r.tensors}
    assert len(names) == 3 + 9 * model.config.num_hidden_layers, sorted(names)
    q = names["blk.0.attn_q.weight"]
    got = gguf.quants.dequantize(q.data, q.tensor_type).reshape(HEADS * HEAD_DIM, HIDDEN)
    assert np.array_equal(got, permute(sd["model.layers.0.self_attn.q_proj.weight"], HEADS, HEADS))
    for t in r.tensors:  # t.shape is ggml's ne order (innermost first)
        assert int(np.prod([int(x) for x in t.shape])) == sd_numel(sd, t.name), t.name
    for i, kind in enumerate(["F16", "Q8_0"]):
        t = names[f"blk.{i}.ffn_down.weight"]
        assert t.tensor_type.name == kind, (t.name, t.tensor_type)
        got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(HIDDEN, INTERMEDIATE)
        assert np.array_equal(got, dequant[f"model.layers.{i}.mlp.down_proj.weight"])


# ----------------------------------------------------------------------------------------------
# quant blocks


def quant_blocks() -> dict:
    import numpy as np
    import gguf
    from gguf import GGMLQuantizationType as T

    expected = {"F16": (1, 2), "BF16": (1, 2), "Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20),
                "Q4_K": (256, 144), "Q6_K": (256, 210),
                # Appended (issue 25), so the blocks above keep their random bytes.
                "Q5_0": (32, 22), "Q5_1": (32, 24), "Q5_K": (256, 176), "Q3_K": (256, 110)}
    rng = np.random.default_rng(7)

    def f16(lo: float, hi: float, sign: bool = False) -> bytes:
        v = rng.uniform(lo, hi) * (rng.choice([-1.0, 1.0]) if sign else 1.0)
        return np.float16(v).tobytes()

    def rand_bytes(n: int) -> bytes:
        return rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()

    out = {}
    for name, (bs, ts) in expected.items():
        qt = T[name]
        assert tuple(gguf.GGML_QUANT_SIZES[qt]) == (bs, ts), (name, gguf.GGML_QUANT_SIZES[qt])
        if name == "F16":
            # 64 values: edge cases then random. (An F16 "block" is one value.)
            edge = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, -65504.0, 6.1035156e-05, 5.9604645e-08,
                             -3.0517578e-05, 0.33325195], dtype=np.float16)
            vals = np.concatenate([edge, rng.normal(0, 4, 64 - len(edge)).astype(np.float16)])
            raw = vals.tobytes()
        elif name == "BF16":
            edge = np.array([0.0, -0.0, 1.0, -2.5, 3.3895314e38, -1.1754944e-38, 9.1835e-41, 1e-30,
                             1e30, 0.33398438], dtype=np.float32)
            f = np.concatenate([edge, rng.normal(0, 4, 64 - len(edge)).astype(np.float32)])
            raw = (f.view(np.uint32) >> 16).astype(np.uint16).tobytes()  # truncation: fine for fixtures
        else:
            blocks = []
            for _ in range(2):
                if name == "Q8_0":
                    blocks.append(f16(0.001, 0.05, sign=True) + rand_bytes(32))
                elif name == "Q4_0":
                    blocks.append(f16(0.01, 0.5, sign=True) + rand_bytes(16))
                elif name == "Q4_1":
                    blocks.append(f16(0.01, 0.5, sign=True) + f16(0.0, 2.0, sign=True) + rand_bytes(16))
                elif name == "Q4_K":  # d, dmin, scales[12] (6-bit packed), qs[128]
                    blocks.append(f16(0.001, 0.05) + f16(0.001, 0.05) + rand_bytes(12) + rand_bytes(128))
                elif name == "Q6_K":  # ql[128], qh[64], scales[16] (int8), d
                    blocks.append(rand_bytes(128) + rand_bytes(64) + rand_bytes(16) + f16(0.0005, 0.01, sign=True))
                elif name == "Q5_0":  # d, qh[4], qs[16]
                    blocks.append(f16(0.01, 0.5, sign=True) + rand_bytes(4) + rand_bytes(16))
                elif name == "Q5_1":  # d, m, qh[4], qs[16]
                    blocks.append(f16(0.01, 0.5, sign=True) + f16(0.0, 2.0, sign=True) + rand_bytes(4) + rand_bytes(16))
                elif name == "Q5_K":  # d, dmin, scales[12], qh[32], qs[128]
                    blocks.append(f16(0.001, 0.05) + f16(0.001, 0.05) + rand_bytes(12) + rand_bytes(32) + rand_bytes(128))
                elif name == "Q3_K":  # hmask[32], qs[64], scales[12], d
                    blocks.append(rand_bytes(32) + rand_bytes(64) + rand_bytes(12) + f16(0.001, 0.05, sign=True))
            raw = b"".join(blocks)
            assert len(raw) == 2 * ts
        values = gguf.quants.dequantize(np.frombuffer(raw, np.uint8), qt)
        values = np.asarray(values, dtype=np.float32).reshape(-1)
        assert np.all(np.isfinite(values)), name
        n_blocks = len(raw) // ts
        assert len(values) == n_blocks * bs, (name, len(values))
        out[name] = {
            "ggml_type": int(qt),
            "block_size": bs,
            "type_size": ts,
            "n_blocks": n_blocks,
            "hex": raw.hex(),
            "values": [float(v) for v in values],  # exact float32 values (shortest repr of the f64)
        }
    return out


# ----------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "Tests", "Fixtures", "tiny"))
    args = ap.parse_args()
    out = args.out

    import numpy as np
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)

    toks = {kind: build_tokenizer(kind) for kind in ("llama", "qwen2")}
    assert toks["llama"].token_to_id("<|endoftext|>") == 0 and toks["llama"].token_to_id(BOS) == 1
    assert toks["qwen2"].token_to_id("<|endoftext|>") == VOCAB_SIZE - 3

    models = {}
    for kind, tok in toks.items():
        d = os.path.join(out, kind)
        os.makedirs(d)
        cfg = hf_config(kind, tok)
        write_text(os.path.join(d, "config.json"), json.dumps(cfg, indent=2) + "\n")
        write_text(os.path.join(d, "tokenizer.json"), tokenizer_json(tok, merges_as_strings=(kind == "llama")))
        write_text(os.path.join(d, "tokenizer_config.json"), json.dumps(tokenizer_config(tok), indent=2, ensure_ascii=False) + "\n")
        model = build_model(kind, cfg)
        save_safetensors(model, os.path.join(d, "model.safetensors"))
        models[kind] = model

        # The files on disk load back to the same model and tokenizer.
        from transformers import AutoModelForCausalLM, AutoTokenizer

        re = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
        for k, v in model.state_dict().items():
            assert torch.equal(v, re.state_dict()[k]), k
        assert re.config.rope_parameters["rope_theta"] == ROPE_THETA
        hf_tok = AutoTokenizer.from_pretrained(d)
        for s in TOKENIZER_STRINGS:
            assert hf_tok.encode(s, add_special_tokens=False) == tok.encode(s, add_special_tokens=False).ids, (kind, s)
        messages = [{"role": "user", "content": "What is 3*4?"}]
        assert hf_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == render_chat(messages)

    # --- GGUF ---
    gguf_path = os.path.join(out, "llama.gguf")
    dequant = write_gguf(models["llama"], toks["llama"], gguf_path)
    check_gguf(gguf_path, models["llama"], dequant)
    gguf_model = build_model("llama", hf_config("llama", toks["llama"]))
    with torch.no_grad():
        params = dict(gguf_model.named_parameters())
        for k, v in dequant.items():
            params[k].copy_(torch.from_numpy(v))

    # Cross-check: transformers' own GGUF loader (which un-permutes Q/K) reads the same weights.
    from transformers import AutoModelForCausalLM

    tg = AutoModelForCausalLM.from_pretrained(out, gguf_file="llama.gguf", dtype=torch.float32, attn_implementation="eager")
    for k, v in gguf_model.state_dict().items():
        assert torch.equal(v, tg.state_dict()[k]), k
    del tg

    # --- reference logits ---
    chat_messages = [{"role": "user", "content": "What is 3*4?"}]
    chat_text = render_chat(chat_messages)
    rand_ids = [int(x) for x in np.random.default_rng(0).integers(0, VOCAB_SIZE, size=20)]

    def cases_for(tok):
        enc = lambda s: tok.encode(s, add_special_tokens=False).ids  # noqa: E731
        return [
            {"name": "plain", "text": "12 + 7 = 19", "ids": enc("12 + 7 = 19")},
            {"name": "chat", "messages": chat_messages, "text": chat_text, "ids": enc(chat_text)},
            {"name": "random_ids", "ids": rand_ids},
        ]

    ref_models = {}
    for key, model, tokkind, src in [
        ("llama-safetensors", models["llama"], "llama", "llama/model.safetensors"),
        ("qwen2-safetensors", models["qwen2"], "qwen2", "qwen2/model.safetensors"),
        ("llama-gguf", gguf_model, "llama", "llama.gguf"),
    ]:
        cases = []
        for c in cases_for(toks[tokkind]):
            with torch.no_grad():
                logits = model(torch.tensor([c["ids"]], dtype=torch.long), use_cache=False).logits[0]
            assert logits.shape == (len(c["ids"]), VOCAB_SIZE)
            c = dict(c)
            c["argmax"] = [int(i) for i in logits.argmax(-1)]
            c["logits"] = [[sig6(x) for x in row] for row in logits.tolist()]
            cases.append(c)
        ref_models[key] = {"file": src, "tokenizer": tokkind, "vocab_size": VOCAB_SIZE, "cases": cases}
        print(f"{key:18s} " + "  ".join(f"{c['name']}: {len(c['ids'])} tok, max|logit|={max(abs(x) for r in c['logits'] for x in r):.2f}" for c in cases))

    # How far the F16/Q8_0 tensors move the GGUF logits from the F32 model's (for the README).
    a = np.array(ref_models["llama-gguf"]["cases"][0]["logits"])
    b = np.array(ref_models["llama-safetensors"]["cases"][0]["logits"])
    print(f"llama-gguf vs llama-safetensors, plain case: max |diff| = {np.abs(a - b).max():.4g}")

    ref_tok = {}
    for kind, tok in toks.items():
        rows = []
        for s in TOKENIZER_STRINGS:
            ids = tok.encode(s, add_special_tokens=False).ids
            want = unicodedata.normalize("NFC", s) if kind == "qwen2" else s
            assert tok.decode(ids, skip_special_tokens=False) == want, (kind, s)
            rows.append({"text": s, "ids": ids})
        ref_tok[kind] = rows

    ref = {
        "generator": "scripts/make_tiny_fixtures.py",
        "special_tokens": {kind: {s: tok.token_to_id(s) for s in SPECIALS} for kind, tok in toks.items()},
        "models": ref_models,
        "tokenizers": ref_tok,
    }
    write_text(os.path.join(out, "reference.json"), dumps(ref) + "\n")
    write_text(os.path.join(out, "quant_blocks.json"), dumps(quant_blocks()) + "\n")

    total = 0
    for dirpath, _, files in sorted(os.walk(out)):
        for fn in sorted(files):
            p = os.path.join(dirpath, fn)
            size = os.path.getsize(p)
            total += size
            with open(p, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()[:16]
            print(f"{size:9d}  {digest}  {os.path.relpath(p, out)}")
    print(f"total {total} bytes in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
