"""`ponder quantize` (issue 25): ggml's block formats written as llama.cpp's quantize tool writes
them, from the same fp32 weights (the F32 file is the dequantized Q4_1: bench/quantized_files.py).

The oracle is llama.cpp itself: llama-cpp-python's llama_model_quantize on the same F32 file, and
llama.cpp as the evaluator of every file's perplexity on a fixed text (GSM8K test solutions)."""
import ctypes
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import MODEL, ROOT, require_model

sys.path.insert(0, os.path.join(ROOT, "bench"))
import quantized_files  # noqa: E402

CLI = os.path.join(ROOT, ".build", "release", "ponder-cli")


@pytest.fixture(scope="module")
def f32():
    require_model()
    return quantized_files.ensure("F32")


def ponder_quantize(src, out, t):
    p = subprocess.run([CLI, "quantize", src, out, "--type", t], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return out


def llama_quantize(src, out, ftype):
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    assert llama_cpp.llama_model_quantize(src.encode(), out.encode(), ctypes.byref(params)) == 0
    return out


def tensors(path):
    import gguf
    return {t.name: (t.tensor_type.name, np.asarray(t.data).view(np.uint8).reshape(-1)) for t in gguf.GGUFReader(path).tensors}


BLOCK_BYTES = {"Q8_0": 34, "Q5_0": 22, "Q4_0": 18, "Q4_1": 20, "Q4_K": 144, "Q6_K": 210}


@pytest.mark.parametrize("ours,ftype_name", [("q8_0", "Q8_0"), ("q5_0", "Q5_0"), ("q4_0", "Q4_0"), ("q4_1", "Q4_1"),
                                             ("q4_k", "Q4_K_M"), ("q6_k", "Q6_K")])
def test_blocks_are_llama_quantize_blocks(f32, tmp_path, ours, ftype_name):
    """Every tensor both files hold in the same type has the same blocks: all of them for the
    32-value formats; for the K-quants, whose scale search sums floats in a loop, at least 99 %
    (a compiler that fuses a multiply-add can move a near-tie)."""
    import llama_cpp
    mine = tensors(ponder_quantize(f32, str(tmp_path / "ponder.gguf"), ours))
    theirs = tensors(llama_quantize(f32, str(tmp_path / "llama.gguf"), getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype_name}")))
    compared, equal, blocks = 0, 0, 0
    for name, (t, data) in mine.items():
        if name not in theirs or theirs[name][0] != t or t not in BLOCK_BYTES:
            continue
        a, b = data.reshape(-1, BLOCK_BYTES[t]), theirs[name][1].reshape(-1, BLOCK_BYTES[t])
        compared += 1
        equal += int((a == b).all(axis=1).sum())
        blocks += len(a)
    assert compared >= 30, f"too few tensors in a common type ({compared})"
    want = 1.0 if ours in ("q8_0", "q5_0", "q4_0", "q4_1") else 0.99
    assert equal >= want * blocks, f"{equal} of {blocks} blocks equal over {compared} tensors"


def test_types_fall_back_as_llama_quantize_does(f32, tmp_path):
    # SmolLM2's rows are 576 wide: Q4_K → Q5_0 and Q6_K → Q8_0 there; down_proj's 1536 is 6 × 256.
    types = {n: t for n, (t, _) in tensors(ponder_quantize(f32, str(tmp_path / "k.gguf"), "q4_k")).items()}
    assert types["blk.0.ffn_down.weight"] == "Q4_K" and types["blk.0.ffn_up.weight"] == "Q5_0"
    assert types["blk.0.attn_norm.weight"] == "F32"
    types = {n: t for n, (t, _) in tensors(ponder_quantize(f32, str(tmp_path / "6.gguf"), "q6_k")).items()}
    assert types["blk.0.ffn_down.weight"] == "Q6_K" and types["blk.0.attn_q.weight"] == "Q8_0"


def perplexity(path, ids):
    from llama_cpp import Llama
    llm = Llama(model_path=path, n_ctx=512, n_threads=2, n_threads_batch=2, logits_all=True, verbose=False)
    nll, n = 0.0, 0
    for s in range(0, len(ids) - 1, 511):
        chunk = ids[s:s + 512]
        if len(chunk) < 2:
            break
        llm.reset()
        llm.eval(chunk)
        z = np.array(llm.scores[:len(chunk) - 1], dtype=np.float64)
        z -= z.max(axis=1, keepdims=True)
        lp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        nll -= lp[np.arange(len(chunk) - 1), chunk[1:]].sum()
        n += len(chunk) - 1
    return float(np.exp(nll / n))


def test_perplexity_within_one_percent_of_llama_quantize(f32, tmp_path):
    import llama_cpp
    from llama_cpp import Llama
    with open(os.path.join(ROOT, "data", "gsm8k", "test.jsonl")) as f:
        text = "\n\n".join(json.loads(line)["answer"] for line in list(f)[:60])
    tok = Llama(model_path=f32, n_ctx=64, vocab_only=True, verbose=False)
    ids = tok.tokenize(text.encode(), add_bos=False)
    assert len(ids) > 2000
    out = {}
    for ours, ftype in (("q8_0", llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0), ("q4_k", llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_S)):
        mine = perplexity(ponder_quantize(f32, str(tmp_path / f"{ours}-ponder.gguf"), ours), ids)
        theirs = perplexity(llama_quantize(f32, str(tmp_path / f"{ours}-llama.gguf"), ftype), ids)
        out[ours] = (mine, theirs)
        assert abs(mine - theirs) <= 0.01 * theirs, out
    base = perplexity(f32, ids)
    print(f"perplexity over {len(ids)} tokens: F32 {base:.4f}; (Ponder, llama.cpp): {out}")
    assert out["q8_0"][0] < out["q4_k"][0] and base <= out["q4_k"][0] * 1.001, (base, out)


def test_bf16_is_torchs_rounding_and_both_engines_read_it(f32, tmp_path):
    """"dtype": "bf16" from a model held in blocks: safetensors transformers loads as bfloat16
    with torch's own rounding of the fp32 values, and a GGUF llama.cpp and Ponder both run."""
    import gguf
    import ponder
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM
    m = ponder.Model.load(MODEL)
    m.save(str(tmp_path / "hf"), format="safetensors", dtype="bf16")
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), torch_dtype="auto")
    w = hf.model.layers[3].mlp.down_proj.weight
    assert w.dtype == torch.bfloat16
    ref = next(t for t in gguf.GGUFReader(f32).tensors if t.name == "blk.3.ffn_down.weight")
    expect = torch.from_numpy(np.asarray(ref.data, dtype=np.float32).reshape(w.shape)).to(torch.bfloat16)
    assert torch.equal(w.detach(), expect)
    path = str(tmp_path / "m.gguf")
    m.save(path, dtype="bf16")
    types = {n: t for n, (t, _) in tensors(path).items()}
    assert types["blk.0.ffn_up.weight"] == "BF16" and types["blk.0.attn_norm.weight"] == "F32"
    prompt = "The capital of France is"
    llm = Llama(model_path=path, n_ctx=128, n_threads=2, verbose=False)
    theirs = llm.create_completion(prompt, max_tokens=4, temperature=0.0, top_k=1)["choices"][0]["text"]
    mine = ponder.Model.load(path).generate(prompt=prompt, max_tokens=4, temperature=0)["completions"][0]["text"]
    assert mine == theirs, (mine, theirs)
