"""Checkpoints written by Ponder, read by the reference implementations: transformers (full
model), PEFT (LoRA adapter), gguf-py and llama.cpp (GGUF)."""
import json
import os

import numpy as np
import pytest

import ponder

REQUIRE = os.environ.get("PONDER_REQUIRE_ORACLES") == "1"


def need(name):
    try:
        return __import__(name)
    except ImportError:
        if REQUIRE:
            pytest.fail(f"{name} is required (PONDER_REQUIRE_ORACLES=1)")
        pytest.skip(f"{name} not installed")


SCRATCH = {"scratch": {"hidden_size": 48, "intermediate_size": 96, "num_layers": 2, "num_heads": 4,
                       "num_kv_heads": 2, "context_length": 128, "seed": 5, "init_std": 0.2}}


def train(tmp_path, lora=None, steps=3, model=SCRATCH):
    cfg = {"model": model, "data": {"train": {"generate": "arithmetic", "count": 32, "seed": 1}, "max_length": 64},
           "training": {"batch_size": 4, "max_steps": steps, "learning_rate": 1e-2},
           "output": {"dir": str(tmp_path / "run")}}
    if lora:
        cfg["lora"] = lora
    t = ponder.Trainer(cfg)
    summary = t.run()
    return t, summary


def ponder_logprobs(model, prompt, n=12):
    r = model.generate(prompt=prompt, max_tokens=n, temperature=0)
    c = r["completions"][0]
    return model.tokenize(prompt), c["token_ids"], c["logprobs"]


def hf_logprobs(hf, prompt_ids, ids):
    torch = need("torch")
    with torch.no_grad():
        x = torch.tensor([prompt_ids + ids])
        logits = hf(x).logits[0].float()
        lp = torch.log_softmax(logits, -1)
    p = len(prompt_ids)
    return [lp[p - 1 + k, t].item() for k, t in enumerate(ids)]


def test_full_checkpoint_loads_in_transformers(tmp_path):
    need("torch")
    transformers = need("transformers")
    t, summary = train(tmp_path)
    ckpt = summary["checkpoint"]
    assert ckpt.endswith("checkpoint-3")
    m = t.model()
    prompt = "<|im_start|>user\nWhat is 2 + 2?<|im_end|>\n<|im_start|>assistant\n"
    prompt_ids, ids, lps = ponder_logprobs(m, prompt)
    hf = transformers.AutoModelForCausalLM.from_pretrained(ckpt, dtype="float32")
    ref = hf_logprobs(hf, prompt_ids, ids)
    np.testing.assert_allclose(lps, ref, atol=2e-4)
    tok = transformers.AutoTokenizer.from_pretrained(ckpt)
    for text in ["What is 12 + 7?", "  spaces\tand\nlines", "<|im_start|>user\nhé 😀<|im_end|>"]:
        assert tok(text, add_special_tokens=False)["input_ids"] == m.tokenize(text)


def test_lora_adapter_loads_in_peft(tmp_path):
    need("torch")
    transformers = need("transformers")
    peft = need("peft")
    base_dir = tmp_path / "base"
    t0, _ = train(tmp_path / "pre", steps=2)
    t0.model().save(str(base_dir))
    t, summary = train(tmp_path, lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj"]},
                       steps=3, model={"path": str(base_dir)})
    ckpt = summary["checkpoint"]
    assert os.path.exists(os.path.join(ckpt, "adapter_model.safetensors"))
    cfg = json.load(open(os.path.join(ckpt, "adapter_config.json")))
    assert cfg["r"] == 4 and sorted(cfg["target_modules"]) == ["down_proj", "q_proj", "v_proj"]
    base = transformers.AutoModelForCausalLM.from_pretrained(str(base_dir), dtype="float32")
    hf = peft.PeftModel.from_pretrained(base, ckpt)
    m = t.model()
    prompt = "<|im_start|>user\nWhat is 9 * 3?<|im_end|>\n<|im_start|>assistant\n"
    prompt_ids, ids, lps = ponder_logprobs(m, prompt)
    np.testing.assert_allclose(lps, hf_logprobs(hf, prompt_ids, ids), atol=2e-4)
    # Ponder reads the adapter back onto the base model.
    again = ponder.Model.load(str(base_dir), adapter=ckpt)
    _, ids2, lps2 = ponder_logprobs(again, prompt)
    assert ids2 == ids
    np.testing.assert_allclose(lps2, lps, atol=1e-5)


def test_gguf_matches_safetensors_and_llama_cpp(tmp_path):
    gguf = need("gguf")
    from safetensors.numpy import load_file  # noqa: comes with transformers' deps
    t, _ = train(tmp_path, steps=2)
    m = t.model()
    m.save(str(tmp_path / "hf"))
    m.save(str(tmp_path / "m.gguf"))
    hf = load_file(str(tmp_path / "hf" / "model.safetensors"))
    r = gguf.GGUFReader(str(tmp_path / "m.gguf"))
    assert r.fields["general.architecture"].contents() == "llama"
    tensors = {x.name: x for x in r.tensors}
    n_head, n_kv = 4, 2

    def permute(w, n):  # llama.cpp's convert_hf_to_gguf LlamaModel.permute
        return w.reshape(n, 2, w.shape[0] // n // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    q = np.array(tensors["blk.0.attn_q.weight"].data).reshape(hf["model.layers.0.self_attn.q_proj.weight"].shape)
    np.testing.assert_array_equal(q, permute(hf["model.layers.0.self_attn.q_proj.weight"], n_head))
    k = np.array(tensors["blk.1.attn_k.weight"].data).reshape(hf["model.layers.1.self_attn.k_proj.weight"].shape)
    np.testing.assert_array_equal(k, permute(hf["model.layers.1.self_attn.k_proj.weight"], n_kv))
    np.testing.assert_array_equal(np.array(tensors["blk.1.ffn_down.weight"].data).reshape(48, 96),
                                  hf["model.layers.1.mlp.down_proj.weight"])
    llama_cpp = need("llama_cpp")  # scripts/setup_tests.sh builds llama-cpp-python
    llm = llama_cpp.Llama(str(tmp_path / "m.gguf"), n_ctx=128, verbose=False, n_threads=2)
    prompt = "What is 5 + 6?"
    ours = m.generate(prompt=prompt, max_tokens=16, temperature=0, parse_special=False)["completions"][0]
    theirs = llm(prompt, max_tokens=len(ours["token_ids"]), temperature=0)["choices"][0]["text"]
    # llama-cpp-python decodes with errors="ignore" where Ponder writes U+FFFD for the
    # invalid UTF-8 an untrained byte-level model emits.
    assert theirs == ours["text"].replace("\ufffd", "")
    assert len(theirs) > 3


def test_gguf_q8_0_is_llama_quantize_bytes_and_runs_in_llama_cpp(tmp_path):
    """dtype q8_0 writes the blocks ggml's quantize_row_q8_0 writes (gguf-py's port of it as the
    oracle, on the same weights written F32), F16 where a row is not a multiple of 32, F32
    vectors; Ponder and llama.cpp read the file back to the same greedy answer."""
    gguf = need("gguf")
    t, _ = train(tmp_path, steps=2)
    m = t.model()
    m.save(str(tmp_path / "f32.gguf"))
    m.save(str(tmp_path / "q8.gguf"), dtype="q8_0")
    with pytest.raises(ponder.InvalidArgument, match="dtype"):
        m.save(str(tmp_path / "hf"), dtype="q8_0")
    f32 = {x.name: x for x in gguf.GGUFReader(str(tmp_path / "f32.gguf")).tensors}
    r = gguf.GGUFReader(str(tmp_path / "q8.gguf"))
    assert r.fields["general.file_type"].contents() == 7
    kinds = set()
    for x in r.tensors:
        w = np.array(f32[x.name].data, dtype=np.float32)
        if w.ndim == 1:
            assert x.tensor_type == gguf.GGMLQuantizationType.F32, x.name
        elif w.shape[-1] % 32:
            assert x.tensor_type == gguf.GGMLQuantizationType.F16, x.name
        else:
            assert x.tensor_type == gguf.GGMLQuantizationType.Q8_0, x.name
            want = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0)
            np.testing.assert_array_equal(np.array(x.data).reshape(-1), want.reshape(-1), err_msg=x.name)
        kinds.add(x.tensor_type.name)
    assert "Q8_0" in kinds
    q8 = ponder.Model.load(str(tmp_path / "q8.gguf"), threads=2)
    prompt = "What is 5 + 6?"
    ours = q8.generate(prompt=prompt, max_tokens=8, temperature=0, parse_special=False)["completions"][0]
    llama_cpp = need("llama_cpp")
    llm = llama_cpp.Llama(str(tmp_path / "q8.gguf"), n_ctx=128, verbose=False, n_threads=2)
    theirs = llm(prompt, max_tokens=len(ours["token_ids"]), temperature=0)["choices"][0]["text"]
    # llama.cpp multiplies Q8_0 weights by 8-bit activations, Ponder (until issue 25's kernels) by
    # fp32 ones: the first token agrees; the full text is reported.
    print("ponder:", repr(ours["text"]), "llama.cpp:", repr(theirs))
    assert theirs and ours["text"].replace("\ufffd", "")[:1] == theirs[:1]
