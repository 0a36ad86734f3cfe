#!/usr/bin/env python3
"""Writes the fuzzers' fixed model and seed corpora (Tests/Fuzz/model, Tests/Fuzz/corpus).

  python3 scripts/make_fuzz_seeds.py

Deterministic (numpy's seeded generator, no torch), so rerunning leaves the committed files
(JSON and text seeds) unchanged; the weight files (model, GGUF and safetensors seeds) are not
committed: setup.sh, fuzz.sh, run_hostile.sh and sanitize.sh run this when they are missing (they look for
the last file it writes, regressions/safetensors/sampler-nonfinite-logits.safetensors). Everything is tiny (KBs): libFuzzer mutates small inputs far faster, and a seed only
has to reach the code paths, not to be a useful model.

  model/            a valid Hugging Face directory (config.json, tokenizer.json = the tiny llama
                    fixture's, tokenizer_config.json, model.safetensors; hidden 8, one layer) and
                    a PEFT adapter for it (adapter/): the fixed files beside the fuzzed one
  corpus/gguf       three GGUF models: llama F32/F16/BF16, qwen2 (biases, tied) Q8_0/Q4_0/Q4_1,
                    llama Q4_K/Q6_K; a 52-token byte-level vocabulary with a few merges
  regressions/gguf, regressions/safetensors
                    the model-file crash inputs, rebuilt from their causes (end of this file)
  corpus/<target>   the fixed file's variants for safetensors, hf_config, tokenizer_json,
                    adapter_config; texts for tokenizer; JSON for the request/config parsers
"""
from __future__ import annotations

import json
import os
import shutil
import struct

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZ = os.path.join(ROOT, "Tests", "Fuzz")
TINY = os.path.join(ROOT, "Tests", "Fixtures", "tiny")

rng = np.random.default_rng(12)

# --------------------------------------------------------------------------------------------
# helpers


def out(path: str, data: bytes | str) -> None:
    path = os.path.join(FUZZ, path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def weights(*shape: int, std: float = 0.3) -> np.ndarray:
    return (rng.standard_normal(shape) * std).astype(np.float32)


def safetensors(tensors: dict[str, tuple[str, np.ndarray]], metadata: dict | None = None) -> bytes:
    """By hand rather than through the safetensors package, so dtype per tensor is explicit."""
    header: dict = {}
    blobs = []
    offset = 0
    for name, (dtype, a) in tensors.items():
        if dtype == "F32":
            b = a.astype("<f4").tobytes()
        elif dtype == "F16":
            b = a.astype("<f2").tobytes()
        else:  # BF16: the top half of the f32 bits
            b = (a.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def pretty(v) -> str:
    return json.dumps(v, indent=2) + "\n"


# --------------------------------------------------------------------------------------------
# the fixed Hugging Face model (tiny llama fixture tokenizer, 300 tokens)

VOCAB, HIDDEN, FFN, HEADS, KV_HEADS, HEAD_DIM = 300, 8, 16, 2, 1, 4

hf_config = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": VOCAB,
    "hidden_size": HIDDEN,
    "intermediate_size": FFN,
    "num_hidden_layers": 1,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "head_dim": HEAD_DIM,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def hf_tensors(dtypes: dict[str, str]) -> dict[str, tuple[str, np.ndarray]]:
    p = "model.layers.0."
    shapes = {
        "model.embed_tokens.weight": (VOCAB, HIDDEN),
        p + "input_layernorm.weight": (HIDDEN,),
        p + "self_attn.q_proj.weight": (HEADS * HEAD_DIM, HIDDEN),
        p + "self_attn.k_proj.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
        p + "self_attn.v_proj.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
        p + "self_attn.o_proj.weight": (HIDDEN, HEADS * HEAD_DIM),
        p + "post_attention_layernorm.weight": (HIDDEN,),
        p + "mlp.gate_proj.weight": (FFN, HIDDEN),
        p + "mlp.up_proj.weight": (FFN, HIDDEN),
        p + "mlp.down_proj.weight": (HIDDEN, FFN),
        "model.norm.weight": (HIDDEN,),
    }
    t = {}
    for name, shape in shapes.items():
        a = (1 + weights(*shape, std=0.1)) if len(shape) == 1 else weights(*shape)
        kind = "norm" if len(shape) == 1 else "embed" if "embed" in name else "matrix"
        t[name] = (dtypes[kind], a)
    return t


os.makedirs(os.path.join(FUZZ, "model", "adapter"), exist_ok=True)
shutil.copy(os.path.join(TINY, "llama", "tokenizer.json"), os.path.join(FUZZ, "model", "tokenizer.json"))
shutil.copy(os.path.join(TINY, "llama", "tokenizer_config.json"), os.path.join(FUZZ, "model", "tokenizer_config.json"))
out("model/config.json", pretty(hf_config))
out("model/model.safetensors", safetensors(hf_tensors({"norm": "F32", "embed": "BF16", "matrix": "F16"})))

adapter_config = {
    "peft_type": "LORA",
    "r": 2,
    "lora_alpha": 4,
    "target_modules": ["q_proj", "v_proj"],
    "bias": "none",
    "base_model_name_or_path": "tiny",
}
out("model/adapter/adapter_config.json", pretty(adapter_config))
ap = "base_model.model.model.layers.0.self_attn."
out(
    "model/adapter/adapter_model.safetensors",
    safetensors({
        ap + "q_proj.lora_A.weight": ("F32", weights(2, HIDDEN)),
        ap + "q_proj.lora_B.weight": ("F32", weights(HEADS * HEAD_DIM, 2, std=0.05)),
        ap + "v_proj.lora_A.weight": ("F32", weights(2, HIDDEN)),
        ap + "v_proj.lora_B.weight": ("F32", weights(KV_HEADS * HEAD_DIM, 2, std=0.05)),
    }),
)

# --------------------------------------------------------------------------------------------
# corpus: the Hugging Face directory's three files, and the adapter's config

out("corpus/safetensors/mixed.safetensors", safetensors(hf_tensors({"norm": "F32", "embed": "BF16", "matrix": "F16"})))
out("corpus/safetensors/f32_meta.safetensors",
    safetensors(hf_tensors({"norm": "F32", "embed": "F32", "matrix": "F32"}), metadata={"format": "pt"}))

out("corpus/hf_config/llama.json", pretty(hf_config))
c = {k: v for k, v in hf_config.items() if k not in ("head_dim", "rope_theta")}
c["rope_parameters"] = {"rope_theta": 500000.0, "rope_type": "default"}
out("corpus/hf_config/rope_parameters.json", pretty(c))
out("corpus/hf_config/qwen2.json", pretty({**hf_config, "model_type": "qwen2", "rope_scaling": None}))
out("corpus/hf_config/mistral_untied.json", pretty({**hf_config, "model_type": "mistral", "tie_word_embeddings": False}))

with open(os.path.join(TINY, "llama", "tokenizer.json"), "rb") as f:
    out("corpus/tokenizer_json/llama.json", f.read())
with open(os.path.join(TINY, "qwen2", "tokenizer.json"), "rb") as f:
    out("corpus/tokenizer_json/qwen2.json", f.read())

out("corpus/adapter_config/qv.json", pretty(adapter_config))
out("corpus/adapter_config/default_names.json",
    pretty({"r": 2, "target_modules": ["v_proj", "q_proj"], "use_dora": False, "use_rslora": False}))

# --------------------------------------------------------------------------------------------
# corpus: GGUF models (gguf-py writes the container; quantized blocks are built by hand with
# sane scales, so dequantized weights are finite and generation runs)

import gguf  # noqa: E402
from gguf import GGMLQuantizationType as Q  # noqa: E402


def f16(x: float) -> bytes:
    return np.float16(x).tobytes()


def quant_blocks(qtype: Q, rows: int, cols: int) -> np.ndarray:
    """rows × cols weights as random blocks of qtype: a uint8 array [rows, bytes per row]."""
    size, nbytes = gguf.GGML_QUANT_SIZES[qtype]
    blocks = []
    for _ in range(rows * cols // size):
        if qtype == Q.Q8_0:
            b = f16(0.01) + rng.integers(-127, 128, 32, dtype=np.int8).tobytes()
        elif qtype == Q.Q4_0:
            b = f16(0.05) + rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
        elif qtype == Q.Q4_1:
            b = f16(0.05) + f16(-0.4) + rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
        elif qtype == Q.Q4_K:
            b = f16(0.002) + f16(0.002) + rng.integers(0, 256, 12 + 128, dtype=np.uint8).tobytes()
        elif qtype in (Q.Q5_0, Q.Q5_1):
            b = f16(0.05) + (f16(-0.4) if qtype == Q.Q5_1 else b"") + rng.integers(0, 256, 20, dtype=np.uint8).tobytes()
        elif qtype == Q.Q5_K:
            b = f16(0.002) + f16(0.002) + rng.integers(0, 256, 12 + 32 + 128, dtype=np.uint8).tobytes()
        elif qtype == Q.Q3_K:
            b = rng.integers(0, 256, 32 + 64 + 12, dtype=np.uint8).tobytes() + f16(0.002)
        elif qtype == Q.Q6_K:
            b = (rng.integers(0, 256, 192, dtype=np.uint8).tobytes() + rng.integers(-8, 8, 16, dtype=np.int8).tobytes()
                 + f16(0.002))
        else:
            raise ValueError(qtype)
        assert len(b) == nbytes
        blocks.append(b)
    return np.frombuffer(b"".join(blocks), dtype=np.uint8).reshape(rows, -1)


def byte_symbol(b: int) -> str:
    """GPT-2's bytes_to_unicode."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    if b in printable:
        return chr(b)
    return chr(256 + sorted(set(range(256)) - set(printable)).index(b))


SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ALPHABET = " \n0123456789+-*=?.<>/abcdefghijklmnopqrstuvwxyz"
MERGES = [("Ġ", "1"), ("Ġ", "="), ("i", "s"), ("Ġ", "is"), ("1", "2")]


def gguf_vocab() -> tuple[list[str], list[str]]:
    tokens = SPECIALS + [byte_symbol(ord(c)) for c in ALPHABET]
    for a, b in MERGES:
        tokens.append(a + b)
    return tokens, [f"{a} {b}" for a, b in MERGES]


CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "{{ '<|im_start|>system\\nYou are tiny.<|im_end|>\\n' }}{% endif %}"
          "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def write_gguf(path: str, arch: str, hidden: int, ffn: int, heads: int, kv_heads: int, head_dim: int, tied: bool,
               bias: bool, types: dict[str, Q], pre: str, nan: frozenset = frozenset(),
               transposed: frozenset = frozenset()) -> None:
    """`nan`: F32 tensors whose values are all NaN; `transposed`: tensors stored with their two
    dimensions swapped (same size, wrong shape) — the regression inputs below."""
    tokens, merges = gguf_vocab()
    full = os.path.join(FUZZ, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    w = gguf.GGUFWriter(full, arch, use_temp_file=False)
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if i < len(SPECIALS) else gguf.TokenType.NORMAL for i in range(len(tokens))])
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)

    def tensor(name: str, rows: int, cols: int | None, kind: str) -> None:
        qtype = types[kind] if cols is not None else Q.F32
        if name in transposed:
            rows, cols = cols, rows
        if name in nan:
            w.add_tensor(name, np.full((rows,) if cols is None else (rows, cols), np.nan, dtype=np.float32))
        elif cols is None:
            w.add_tensor(name, 1 + weights(rows, std=0.1))
        elif qtype == Q.F32:
            w.add_tensor(name, weights(rows, cols))
        elif qtype == Q.F16:
            w.add_tensor(name, weights(rows, cols).astype(np.float16))
        elif qtype == Q.BF16:
            bits = (weights(rows, cols).view("<u4") >> 16).astype("<u2")
            w.add_tensor(name, bits.view(np.uint8).reshape(rows, -1), raw_dtype=Q.BF16)
        else:
            w.add_tensor(name, quant_blocks(qtype, rows, cols), raw_dtype=qtype)

    tensor("token_embd.weight", len(tokens), hidden, "embed")
    tensor("blk.0.attn_norm.weight", hidden, None, "")
    tensor("blk.0.attn_q.weight", heads * head_dim, hidden, "in")
    tensor("blk.0.attn_k.weight", kv_heads * head_dim, hidden, "in")
    tensor("blk.0.attn_v.weight", kv_heads * head_dim, hidden, "in")
    if bias:
        tensor("blk.0.attn_q.bias", heads * head_dim, None, "")
        tensor("blk.0.attn_k.bias", kv_heads * head_dim, None, "")
        tensor("blk.0.attn_v.bias", kv_heads * head_dim, None, "")
    tensor("blk.0.attn_output.weight", hidden, heads * head_dim, "out")
    tensor("blk.0.ffn_norm.weight", hidden, None, "")
    tensor("blk.0.ffn_gate.weight", ffn, hidden, "in")
    tensor("blk.0.ffn_up.weight", ffn, hidden, "in")
    tensor("blk.0.ffn_down.weight", hidden, ffn, "out")
    tensor("output_norm.weight", hidden, None, "")
    if not tied:
        tensor("output.weight", len(tokens), hidden, "embed")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


write_gguf("corpus/gguf/llama_f32_f16_bf16.gguf", "llama", hidden=8, ffn=16, heads=2, kv_heads=1, head_dim=4, tied=False,
           bias=False, types={"embed": Q.F16, "in": Q.F32, "out": Q.BF16}, pre="smollm")
write_gguf("corpus/gguf/qwen2_q8_q4.gguf", "qwen2", hidden=32, ffn=32, heads=2, kv_heads=1, head_dim=16, tied=True,
           bias=True, types={"embed": Q.Q8_0, "in": Q.Q4_0, "out": Q.Q4_1}, pre="qwen2")
write_gguf("corpus/gguf/llama_q4k_q6k.gguf", "llama", hidden=256, ffn=8, heads=1, kv_heads=1, head_dim=8, tied=True,
           bias=False, types={"embed": Q.Q4_K, "in": Q.Q6_K, "out": Q.F16}, pre="llama-bpe")

# --------------------------------------------------------------------------------------------
# corpus: text and JSON. tokenizer inputs: byte 0 picks the tokenizer and mode (see
# Tests/Fuzz/Sources/PonderFuzz/Tokenizer.swift), the rest is text or little-endian int32 ids.

TEXTS = [
    "12 + 7 = 19",
    "What is 3*4?",
    "<|im_start|>user\nHi<|im_end|>\n",
    "Caf\u00e9 na\u00efve \u00e9 vs e\u0301 \u4f60\u597d \U0001F642",
    "x\t\t7\n\n   trailing   ",
    "I'm sure they'LL say it's fine",
    "<|im_start|",
]
for i, t in enumerate(TEXTS):
    out(f"corpus/tokenizer/text{i}", bytes([i % 4]) + t.encode())
out("corpus/tokenizer/ids", bytes([4]) + struct.pack("<6i", 1, 80, 299, 5, 2, 150))

REQUESTS = [
    {"prompt": "12 + 7 =", "max_tokens": 4, "min_tokens": 2, "temperature": 0},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
     "max_tokens": 3, "n": 2, "temperature": 0.8, "top_p": 0.9, "top_k": 20, "min_p": 0.05,
     "repetition_penalty": 1.2, "seed": 7, "stop": ["\n", "."]},
    {"prompt": "Hi", "chat": True, "sampling": {"temperature": 1.5, "seed": 3}, "stop": "x", "parse_special": False},
    {"prompt": "<|im_start|>user\n1<|im_end|>", "max_tokens": 0},
]
for i, r in enumerate(REQUESTS):
    out(f"corpus/generate_request/r{i}.json", json.dumps(r))

INFER_REQUESTS = [
    {"prompt": "12 + 7 =", "strategy": "single", "max_tokens": 4, "temperature": 0},
    {"prompt": "12 + 7 =", "strategy": "vote", "n": 4, "seed": 3, "stop": ["\n"]},
    {"messages": [{"role": "user", "content": "2+2?"}], "strategy": "best_of_n", "n": 3,
     "scorer_weights": {"format": 0.5, "reflection": 0, "agreement": 3, "mean_logprob": 1}},
    {"prompt": "1", "chat": True, "strategy": "reflect", "n": 2, "cues": ["Wait,", "Hmm"], "max_reflections": 3,
     "min_thinking_tokens": 2, "max_thinking_tokens": 9, "think_end": "1", "force_answer": "<answer>"},
    {"prompt": "3 * 4", "strategy": "reflect", "temperature": 0, "max_tokens": 12, "think_end": " "},
]
for i, r in enumerate(INFER_REQUESTS):
    out(f"corpus/infer_request/r{i}.json", json.dumps(r))

for i, o in enumerate([{"path": "model.gguf"}, {"path": "hf_dir/", "threads": 2, "adapter": "lora/"}]):
    out(f"corpus/model_options/o{i}.json", json.dumps(o))

# Pipeline configs are the pipeline_config target's seeds (below), not SFT configs.
for name in sorted(n for n in os.listdir(os.path.join(ROOT, "examples", "configs")) if n.startswith("sft_")):
    with open(os.path.join(ROOT, "examples", "configs", name), "rb") as f:
        out(f"corpus/sft_config/{name}", f.read())
out("corpus/sft_config/lora_jsonl.json", json.dumps({
    "model": {"path": "m.gguf"}, "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj"]},
    "data": {"train": "train.jsonl", "eval": {"generate": "arithmetic", "count": 10, "seed": 2}, "packing": True},
    "training": {"max_steps": 3, "adam_beta1": 0.9, "adam_beta2": 0.99, "adam_epsilon": 1e-8, "max_grad_norm": 0.5},
    "output": {"resume": False}}))

out("corpus/sft_data/shapes.jsonl", "\n".join(json.dumps(x) for x in [
    {"prompt": "1+1=", "completion": "2"},
    {"messages": [{"role": "user", "content": "3*4?"}, {"role": "assistant", "content": "<think>3*4=12</think><answer>12</answer>"}]},
    {"question": "Tom has 3 apples and buys 2. How many?", "answer": "3+2=<<3+2=5>>5\n#### 5"},
]) + "\n")
out("corpus/sft_data/blank_lines.jsonl", '\n  \n{"prompt": "a", "completion": "b"}\r\n\n')

out("corpus/json/nested.json", json.dumps({"a": [1, -2.5e-3, True, None, "\u00e9\\n"], "b": {"c": {}}, "d": []}))
out("corpus/json/numbers.json", "[0, -0, 1e308, 9223372036854775807, -9223372036854775808, 18446744073709551615, 0.1]")
out("corpus/json/string.json", '"tab\\t quote\\" \\u00e9 \\ud83d\\ude42"')

# --------------------------------------------------------------------------------------------
# corpus: rewards (completion text, scoring requests) and GRPO (config, prompt files)

COMPLETIONS = [
    ("<think>3 + 4 = 7. Let me verify: 7 - 4 = 3, correct.</think>\n<answer>7</answer>", "#### 7"),
    ("<think>12 * 3 = 36. Wait, I made a mistake: 12 * 3 = 36, so 36 + 1 = 37.</think><answer>37</answer>",
     "The answer is \\boxed{37}"),
    ("The result is \\boxed{\\frac{1}{2}} or 50%", "0.5"),
    ("<think>unclosed <answer>1,000</answer></think>", "#### 1000"),
    ("no tags, last number 42.0", None),
]
for i, (completion, reference) in enumerate(COMPLETIONS):
    out(f"corpus/reward_text/c{i}", completion.encode() + (b"\0" + reference.encode() if reference else b""))
GUARDED_ITEMS = []
# Guarded reflection's check table (issue 28), with the prompt after a second NUL: the equation
# reader, the problem's quantities and every verdict class.
with open(os.path.join(ROOT, "Tests", "Fixtures", "rewards", "reflection_guarded.jsonl")) as f:
    for row in map(json.loads, f):
        if row["id"] in ("seven_unrelated", "same_check_three_ways", "latex_check", "real_correction", "gsm8k_steps",
                         "gsm8k_backwards", "rounded_check", "thousands", "pulled_in_numbers"):
            text = f"<think>\n{row['think']}\n</think>\n<answer>\n{row['answer']}\n</answer>"
            out(f"corpus/reward_text/guarded_{row['id']}",
                text.encode() + b"\0" + row["reference"].encode() + b"\0" + (row.get("prompt") or "").encode())
            GUARDED_ITEMS.append({"completion": text, "reference": row["reference"], "prompt": row.get("prompt") or ""})
out("corpus/score/guarded.json", json.dumps({"items": GUARDED_ITEMS}))
out("corpus/score/default.json", json.dumps({"items": [{"completion": c, "reference": r} for c, r in COMPLETIONS if r]}))
out("corpus/score/all_options.json", json.dumps({
    "rewards": ["accuracy", "format", "reflection", "length", "repetition"], "reward_weights": [1, 0.5, 1, 1, 0.2],
    "format_mode": "paper", "reflection_mode": "paper", "reflection_requires_correct": False,
    "reflection_correction_bonus": 0.1, "reflection_ngram_size": 3, "reflection_repetition_weight": 1.5,
    "max_completion_length": 64, "soft_punish_cache": 16, "repetition_ngram_size": 2, "repetition_max_penalty": -0.5,
    "items": [{"completion": COMPLETIONS[1][0], "reference": "37", "prompt": "What is 12*3+1?", "completion_tokens": 60}]}))

with open(os.path.join(ROOT, "examples", "configs", "grpo_arithmetic.json"), "rb") as f:
    out("corpus/grpo_config/grpo_arithmetic.json", f.read())
out("corpus/grpo_config/every_key.json", json.dumps({
    "kind": "grpo", "model": {"path": "m.gguf"}, "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
    "data": {"train": "prompts.jsonl", "eval": "eval.jsonl", "system": "paper", "max_prompt_length": 128},
    "reward": {"rewards": ["accuracy", "format", "mine"], "reward_weights": [1, 1, 0.5], "custom": ["mine"],
               "format_mode": "strict", "reflection_mode": "guarded"},
    "training": {"prompts_per_step": 2, "num_generations": 4, "gradient_accumulation_steps": 2,
                 "max_completion_length": 32, "min_completion_length": 4, "temperature": 0.9, "top_p": 0.95,
                 "top_k": 20, "min_p": 0.01, "repetition_penalty": 1.1, "beta": 0.0, "epsilon": 0.2, "epsilon_high": 0.28, "loss_type": "dapo",
                 "importance_sampling_level": "sequence", "use_bias_correction_kl": True, "scale_rewards": "batch",
                 "multi_objective_aggregation": "normalize_then_sum", "num_iterations": 2,
                 "mask_truncated_completions": True, "skip_zero_std_groups": True, "log_completions_steps": 1,
                 "eval_limit": 10, "max_steps": 3, "learning_rate": 1e-5, "max_nonfinite_steps": 2},
    "output": {"dir": "runs/x", "save_steps": 1, "resume": False},
    "environment": {"name": "checker", "max_turns": 3, "reward_weight": 0.5, "role": "user",
                    "options": {"max_turns": 2, "discount": 0.5, "retry_cue": "Again."}}, "threads": 1}))
out("corpus/rejection_config/every_key.json", json.dumps({
    "prompts": {"generate": "arithmetic", "count": 8, "seed": 1, "split": "train", "ops": ["*", "+"], "max_operand": 60,
                "direct": {"*": 0.5}},
    "system": "paper", "num_samples": 4, "max_completion_length": 32, "temperature": 0.9, "top_p": 0.95,
    "seed": 2, "min_reward": 1.5, "require": ["accuracy", "format"], "max_per_prompt": 2,
    "reward": {"rewards": ["accuracy", "format", "reflection"], "reward_weights": [1, 1, 0.5]},
    "output": "samples.jsonl", "max_prompt_length": 64}))
for name in ("quickstart", "paper"):
    with open(os.path.join(ROOT, "examples", "configs", name + ".json"), "rb") as f:
        out(f"corpus/pipeline_config/{name}.json", f.read())
out("corpus/pipeline_config/every_stage.json", json.dumps({
    "model": {"scratch": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "context_length": 128}},
    "data": {"train": {"generate": "arithmetic", "count": 32, "seed": 1, "ops": ["+"]},
             "eval": {"generate": "arithmetic", "count": 8, "split": "test"}, "system": "paper"},
    "reward": {"rewards": ["accuracy", "format", "mine"], "reward_weights": [1, 1, 0.5], "custom": ["mine"]},
    "output": {"dir": "runs/x", "save_steps": 2, "save_total_limit": 1}, "seed": 1, "threads": 1,
    "stages": [{"type": "pretrain", "max_steps": 2, "packing": False},
               {"type": "sft", "name": "cold-start", "mode": "lora", "lora": {"r": 4}, "max_steps": 2},
               {"type": "grpo", "max_steps": 2, "beta": 0, "loss_type": "cispo", "epsilon_high": 5,
                "reward": {"rewards": ["accuracy"], "reflection_mode": "paper"}},
               {"type": "rejection_sft", "rejection": {"num_samples": 2, "require": ["accuracy"]}, "max_steps": 1},
               {"type": "grpo", "mode": "none"},
               {"type": "eval", "limit": 4, "num_samples": 4, "pass_k": [1, 2, 4], "temperature": 0.7}]}))
out("corpus/grpo_data/shapes.jsonl", "\n".join(json.dumps(x) for x in [
    {"prompt": "What is 2+3?", "reference": "5"},
    {"prompt": "What is 2+3?", "solution": "#### 5"},
    {"messages": [{"role": "system", "content": "Think."}, {"role": "user", "content": "7*6?"}], "reference": "42"},
    {"messages": [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "<answer>2</answer>"}]},
    {"question": "Tom has 3 apples and buys 2. How many?", "answer": "3+2=<<3+2=5>>5\n#### 5"},
]) + "\n")

# --------------------------------------------------------------------------------------------
# dictionaries (libFuzzer -dict): the names and values a mutation is unlikely to spell by chance

HOSTILE_VALUES = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-39", "1e-45", "-0", "0.5", "-1", "1e308",
                  "4294967296", "9223372036854775807", "9223372036854775808", "18446744073709551616", "null", "true",
                  "false", "[]", "{}", '"\\u0000"', '"\\ud800"', '"\\uffff"']


def dictionary(name: str, words: set) -> None:
    """words: str (written as UTF-8) or bytes."""
    def quote(w) -> str:
        b = w.encode() if isinstance(w, str) else w
        return '"' + "".join(chr(c) if 0x20 <= c < 0x7F and chr(c) not in '"\\' else "\\x%02X" % c for c in b) + '"'
    out(f"dict/{name}.dict", "".join(sorted(quote(w) + "\n" for w in words)))


def json_words(value) -> set[str]:
    words: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            words.add(f'"{k}"')
            words |= json_words(v)
    elif isinstance(value, list):
        for v in value:
            words |= json_words(v)
    elif isinstance(value, str) and len(value) < 40:
        words.add(json.dumps(value))
    return words


def corpus_words(target: str, lines: bool = False) -> set[str]:
    words: set[str] = set()
    d = os.path.join(FUZZ, "corpus", target)
    for name in os.listdir(d):
        with open(os.path.join(d, name)) as f:
            docs = [json.loads(x) for x in f if x.strip()] if lines else [json.load(f)]
        for doc in docs:
            words |= json_words(doc)
    return words


for target in ["generate_request", "infer_request", "model_options", "sft_config", "hf_config", "adapter_config", "json", "score",
               "grpo_config", "rejection_config", "pipeline_config"]:
    dictionary(target, corpus_words(target) | set(HOSTILE_VALUES))
dictionary("sft_data", corpus_words("sft_data", lines=True) | set(HOSTILE_VALUES) | {"\n", "####", "<<", ">>"})
dictionary("grpo_data", corpus_words("grpo_data", lines=True) | set(HOSTILE_VALUES) | {"\n", "####"})
REWARD_WORDS = {"<think>", "</think>", "<answer>", "</answer>", "\\boxed{", "\\frac{", "\\sqrt{", "\\dfrac", "\\left(",
                "\\right)", "####", "%", "$", "1,000", "0.5", "-3", "1e5", "\\pi", "wait", "verify", "check", "let me",
                "mistake", "alternatively", "re-evaluate", "step 1", "milestone 2", "edge case", "=", "+", "\u00d7", "\u00f7",
                "\\cdot", "\\times", "(1, 2)", "[1, 2]", "x = ", "\0", "\\div", " x ", "==", "<=", "fix", "goal",
                "working backwards", "84 / 7 = 12", "1 + 1 = 2", "12 * 7 = 74", "3.33"}
dictionary("reward_text", REWARD_WORDS)
with open(os.path.join(FUZZ, "corpus", "tokenizer_json", "llama.json")) as f:
    tok = json.load(f)
dictionary("tokenizer_json", {f'"{k}"' for k in ["model", "type", "vocab", "merges", "added_tokens", "id", "content",
                                                 "special", "pre_tokenizer", "pretokenizers", "individual_digits",
                                                 "ignore_merges", "Sequence", "ByteLevel", "Digits", "Split",
                                                 "pattern", "Regex", "BPE"]}
           | {json.dumps(s) for s in SPECIALS} | {"\\\\p{N}{1,3}", "\\\\p{N}|", "\\\\p{N}]?"} | set(HOSTILE_VALUES))
dictionary("tokenizer", set(SPECIALS) | {"\r\n", "   ", "'s", "'LL", "\u00e9", "\U0001F642", "\u0663", "\t"})
dictionary("safetensors", {'"dtype"', '"shape"', '"data_offsets"', '"__metadata__"', '"F32"', '"F16"', '"BF16"', '"I64"',
                           '"model.embed_tokens.weight"', '"lm_head.weight"', '"model.norm.weight"'} | set(HOSTILE_VALUES))
gguf_keys = ["general.architecture", "general.alignment", "llama.block_count", "llama.context_length",
             "llama.embedding_length", "llama.feed_forward_length", "llama.attention.head_count",
             "llama.attention.head_count_kv", "llama.attention.key_length", "llama.rope.dimension_count",
             "llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon", "llama.vocab_size", "qwen2",
             "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.merges",
             "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
             "tokenizer.ggml.eot_token_id", "tokenizer.chat_template", "output.weight", "blk.0.attn_q.bias",
             "token_embd.weight", "GGUF"]
# and little-endian values: u64 max/2^63, f32 NaN/inf, f16 NaN/inf, ggml type ids 0-30
dictionary("gguf", set(gguf_keys) | {b"\xff\xff\xff\xff\xff\xff\xff\x7f", b"\x00\x00\x00\x00\x00\x00\x00\x80",
                                     b"\xff\xff\xff\xff\xff\xff\xff\xff", b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f",
                                     b"\x00\x7e", b"\x00\x7c"} | {struct.pack("<I", t) for t in (0, 1, 2, 3, 8, 12, 14, 30)})


# --------------------------------------------------------------------------------------------
# regressions: each crash class the fuzzers found in model files, rebuilt from its cause (weight
# files stay out of git); scripts/fuzz.sh smoke and regress replay them.

def gguf_tensor_offset_field(path: str, name: str) -> int:
    """Byte position of tensor `name`'s data offset (a u64) in its GGUF tensor directory."""
    r = gguf.GGUFReader(path)
    f = next(t for t in r.tensors if t.name == name).field
    return f.offset + sum(p.nbytes for p in f.parts[:-1])


LLAMA_F32 = dict(arch="llama", hidden=8, ffn=16, heads=2, kv_heads=1, head_dim=4, tied=False, bias=False,
                 types={"embed": Q.F32, "in": Q.F32, "out": Q.F32}, pre="smollm")
# NaN weights give NaN logits: sampling used to trap when no candidate survived.
write_gguf("regressions/gguf/sampler-nonfinite-logits.gguf", **LLAMA_F32, nan=frozenset({"output_norm.weight"}))
# A shape error used to print `ReversedCollection<Array<Int>>(…)` instead of the shape.
write_gguf("regressions/gguf/message-shows-swift-type.gguf", **LLAMA_F32, transposed=frozenset({"blk.0.ffn_gate.weight"}))
# A tensor offset near 2^63: formatting the "past the end of the file" error overflowed.
write_gguf("regressions/gguf/tensor-offset-overflow.gguf", **LLAMA_F32)
path = os.path.join(FUZZ, "regressions/gguf/tensor-offset-overflow.gguf")
at = gguf_tensor_offset_field(path, "output.weight")
with open(path, "r+b") as f:
    f.seek(at)
    f.write(struct.pack("<Q", 0x7FFF_FFFF_FFFF_FFF0))
t = hf_tensors({"norm": "F32", "embed": "BF16", "matrix": "F16"})
t["model.norm.weight"] = ("F32", np.full((HIDDEN,), np.nan, dtype=np.float32))
out("regressions/safetensors/sampler-nonfinite-logits.safetensors", safetensors(t))

# Issue 25's formats (last, so every seed above keeps its bytes): Q5_0 / Q5_1 rows of 32, Q5_K /
# Q3_K rows of 256.
write_gguf("corpus/gguf/qwen2_q5_0_q5_1.gguf", "qwen2", hidden=32, ffn=32, heads=2, kv_heads=1, head_dim=16, tied=True,
           bias=True, types={"embed": Q.Q5_0, "in": Q.Q5_1, "out": Q.Q5_0}, pre="qwen2")
write_gguf("corpus/gguf/llama_q5k_q3k.gguf", "llama", hidden=256, ffn=8, heads=1, kv_heads=1, head_dim=8, tied=True,
           bias=False, types={"embed": Q.Q5_K, "in": Q.Q3_K, "out": Q.F16}, pre="llama-bpe")

# Issue 25, weights kept in their blocks (ponder_model_load's default): K-quant rows of 256 read
# by the block kernels, and a block whose scale is NaN, refused at load by name.
write_gguf("corpus/gguf/llama_q4k_q6k_native.gguf", "llama", hidden=256, ffn=256, heads=2, kv_heads=1, head_dim=128,
           tied=False, bias=False, types={"embed": Q.Q6_K, "in": Q.Q4_K, "out": Q.Q6_K}, pre="llama-bpe")
write_gguf("corpus/gguf/llama_q8_0_nan_scale.gguf", **{**LLAMA_F32, "hidden": 32, "ffn": 32, "heads": 2, "head_dim": 16,
                                                       "types": {"embed": Q.Q8_0, "in": Q.Q4_1, "out": Q.Q5_0}})
path = os.path.join(FUZZ, "corpus/gguf/llama_q8_0_nan_scale.gguf")
t = next(t for t in gguf.GGUFReader(path).tensors if t.name == "blk.0.attn_q.weight")
with open(path, "r+b") as f:
    f.seek(int(t.data_offset) + 20)  # block 1's f16 scale
    f.write(b"\x00\x7e")
