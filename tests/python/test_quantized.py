"""Issue 25: a GGUF's quantized matrices kept in their blocks ("weights": "native").

Against llama.cpp on the same files (decode logits), memory against the file's tensor bytes, a
non-finite block scale named at load, and LoRA over the frozen block base against LoRA over the
same weights expanded to fp32 (the F32 file is the dequantized Q4_1: bench/quantized_files.py).
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import ponder
from conftest import MODEL, ROOT, require_model

sys.path.insert(0, os.path.join(ROOT, "bench"))
import logits_vs_llamacpp  # noqa: E402
import quantized_files  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def smollm2():
    require_model()


@pytest.mark.parametrize("kind", ["Q4_1", "Q8_0", "Q4_K_M"])
def test_decode_logits_match_llamacpp_on_the_same_file(kind):
    # Q4_K_M: mostly Q5_0 with Q4_K, Q6_K and Q8_0 tensors (SmolLM2's rows are 576 wide).
    r = logits_vs_llamacpp.compare(quantized_files.ensure(kind), steps=64, weights="native")
    assert r["positions"] >= 100, r
    assert r["mean_kl"] <= 0.01, r
    assert r["confident_top1_agree"] == r["confident_positions"], r


RSS_CHILD = r"""
import json, sys
import ponder
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
before = rss()
m = ponder.Model.load(sys.argv[1], threads=2, weights=sys.argv[2])
m.generate(prompt="The capital of France is", max_tokens=8, temperature=0)
print(json.dumps({"rss": rss() - before, "info": m.info()}))
"""


def test_native_weights_take_the_files_bytes():
    tensors = quantized_files.tensor_types(MODEL)["tensor_bytes"]
    out = {}
    for weights in ("native", "f32"):
        p = subprocess.run([sys.executable, "-c", RSS_CHILD, MODEL, weights], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python")), timeout=300)
        assert p.returncode == 0, p.stderr
        out[weights] = json.loads(p.stdout.strip().splitlines()[-1])
    native, f32 = out["native"], out["f32"]
    assert native["info"]["weights"] == "native" and f32["info"]["weights"] == "f32"
    types = native["info"]["tensor_types"]
    assert types["model.layers.0.mlp.down_proj.weight"] == "Q4_1" and types["model.embed_tokens.weight"] == "Q8_0"
    assert types["model.norm.weight"] == "F32" and set(f32["info"]["tensor_types"].values()) == {"F32"}
    assert abs(native["info"]["weight_bytes"] - tensors) <= 0.1 * tensors, (native["info"]["weight_bytes"], tensors)
    # Resident growth over load + a short generation: the blocks plus caches and scratch.
    assert native["rss"] <= 1.1 * tensors + (24 << 20), (native["rss"], tensors)
    assert f32["rss"] >= 4 * tensors, "the fp32 expansion is 4-6 times the blocks: the measure sees memory"


def test_a_non_finite_block_scale_is_named_at_load(tmp_path):
    import gguf
    reader = gguf.GGUFReader(MODEL)
    t = next(t for t in reader.tensors if t.name == "blk.3.ffn_up.weight")
    bad = tmp_path / "bad.gguf"
    shutil.copy(MODEL, bad)
    with open(bad, "r+b") as f:
        f.seek(int(t.data_offset) + 20 * 5)  # block 5 of this Q4_1 tensor: its f16 scale d
        f.write(np.array([np.float16("nan")]).tobytes())
    for weights in ("native", "f32"):
        with pytest.raises(ponder.FormatError) as e:
            ponder.Model.load(str(bad), weights=weights)
        assert "blk.3.ffn_up.weight" in e.value.message and "block 5" in e.value.message and "NaN" in e.value.message


def sft_config(model_path, out):
    return {"model": {"path": model_path},
            "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj", "o_proj", "down_proj"]},
            "data": {"train": os.path.join(ROOT, "data", "gsm8k", "train.jsonl"), "max_length": 160},
            "training": {"batch_size": 2, "max_steps": 20, "learning_rate": 5e-4, "logging_steps": 1, "seed": 4},
            "output": {"dir": str(out)}, "threads": 2}


def test_lora_sft_on_the_blocks_equals_lora_on_their_fp32_expansion(tmp_path):
    losses, merged = {}, tmp_path / "merged"
    for kind in ("Q4_1", "F32"):
        t = ponder.Trainer(sft_config(quantized_files.ensure(kind), tmp_path / kind))
        losses[kind] = [t.step()["loss"] for _ in range(20)]
        if kind == "Q4_1":
            # Merged into (an fp32 copy of) the block base and written as a Hugging Face model.
            m = t.model()
            m.save(str(merged), format="safetensors")
            ids = m.tokenize("Natalia sold clips to 48 of her friends")
            greedy = m.generate(prompt="Natalia sold clips to 48 of her friends", max_tokens=1, temperature=0)
            m.close()
        t.close()
    q, f = np.array(losses["Q4_1"]), np.array(losses["F32"])
    assert np.all(np.abs(q - f) <= 1e-4 * np.abs(f)), (q, f)
    assert q[-5:].mean() < q[:5].mean(), "the adapters learn"
    import torch
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(str(merged), torch_dtype=torch.float32)
    with torch.no_grad():
        z = hf(torch.tensor([ids])).logits[0, -1]
    assert greedy["completions"][0]["token_ids"][0] == int(torch.argmax(z))


def test_grpo_lora_on_blocks_starts_at_the_reference():
    """LoRA's B starts at zero, so at the first step the policy is its reference (the same block
    base with adapters off, no second copy): KL 0 exactly, and with two iterations over the
    rollout the first one's ratios are exactly 1 (nothing clipped)."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        cfg = {"kind": "grpo", "model": {"path": MODEL},
               "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
               "data": {"train": os.path.join(ROOT, "data", "gsm8k", "train.jsonl")},
               "training": {"prompts_per_step": 2, "num_generations": 2, "max_completion_length": 12, "max_steps": 2,
                            "num_iterations": 2, "beta": 0.04, "epsilon": 1e-6, "seed": 1},
               "output": {"dir": d}, "threads": 2}
        t = ponder.Trainer(cfg)
        m = t.step()
        t.close()
    assert m["kl"] == 0.0, m
    assert m["clip_ratio/region_mean"] == 0.0, m
