"""Issue 24's classes: inputs that used to load or pass with status 0 but were wrong, each now
an error that names its key, path or byte offset."""
import json
import os

import pytest

import ponder
from conftest import MODEL


def test_duplicate_keys_are_rejected_with_their_path(model):
    import ctypes
    out = ctypes.c_void_p()
    with pytest.raises(ponder.InvalidArgument, match=r"max_tokens: given twice"):
        ponder._check(ponder.library().ponder_generate(model._h, b'{"prompt": "hi", "max_tokens": 2, "max_tokens": 9}',
                                                      ctypes.byref(out)))
    errors = ponder.validate_config('{"model": {"path": "m"}, "stages": [{"type": "grpo", "beta": 0.1, "beta": 0.2}]}')
    assert errors == [{"path": "stages[0].beta", "message": errors[0]["message"]}] and "given twice" in errors[0]["message"], errors
    # Escaped spellings of one key are the same key.
    with pytest.raises(ponder.InvalidArgument, match=r"items\[0\]\.completion: given twice"):
        ponder._check(ponder.library().ponder_score(b'{"items": [{"completion": "x", "compl\\u0065tion": "y"}]}', ctypes.byref(out)))


def test_null_prompt_is_a_type_error(model):
    with pytest.raises(ponder.InvalidArgument, match=r"prompt: expected a string, got null"):
        import ctypes
        out = ctypes.c_void_p()
        ponder._check(ponder.library().ponder_generate(model._h, b'{"prompt": null, "max_tokens": 2}', ctypes.byref(out)))


def test_weights_are_bounded():
    with pytest.raises(ponder.InvalidArgument, match=r"reward_weights\[0\]"):
        ponder.score(["<think>1</think><answer>1</answer>"], rewards=["format"], reward_weights=[1.7e308])
    r = ponder.score(["<think>1</think><answer>1</answer>"], rewards=["format"], reward_weights=[1e6])
    assert r[0]["total"] is not None


def test_nul_in_a_path_is_refused(tmp_path):
    with pytest.raises(ponder.InvalidArgument, match="NUL"):
        ponder.Model.load(MODEL + "\u0000ignored")
    (tmp_path / "m").mkdir()
    cfg = {"kind": "sft", "model": {"scratch": {"hidden_size": 16, "num_layers": 1, "num_heads": 2}},
           "data": {"train": {"generate": "arithmetic", "count": 4}}, "training": {"max_steps": 1},
           "output": {"dir": str(tmp_path / "out\u0000x")}}
    with pytest.raises(ponder.InvalidArgument, match=r"output\.dir: contains a NUL"):
        ponder.Trainer(cfg)
    assert not os.path.exists(tmp_path / "out")
    cfg["output"]["dir"] = str(tmp_path / "ok")
    cfg["data"]["train"] = str(tmp_path / "data.jsonl") + "\u0000.txt"
    with pytest.raises(ponder.InvalidArgument, match=r"data\.train: contains a NUL"):
        ponder.Trainer(cfg)
    with ponder.Trainer(dict(cfg, data={"train": {"generate": "arithmetic", "count": 4}})) as t:
        with pytest.raises(ponder.InvalidArgument, match="NUL"):
            t.model().save(str(tmp_path / "saved\u0000x"))
        assert not os.path.exists(tmp_path / "saved")


def test_validation_checks_every_path_it_names(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir").mkdir()
    base = json.loads(json.dumps(ponder.default_config()))
    base["model"] = {"path": MODEL}
    base["output"]["dir"] = str(tmp_path / "run")
    base["data"]["eval"] = {"generate": "arithmetic", "count": 4, "split": "test"}
    for bad, why in ((str(fifo), "not a regular file"), (str(tmp_path / "dir"), "is a directory"), ("/dev/zero", "not a regular file"),
                     (str(tmp_path / "missing.jsonl"), "no such file")):
        cfg = dict(base, data=dict(base["data"], train=bad))
        errors = ponder.validate_config(cfg)
        assert [e["path"] for e in errors] == ["data.train"] and why in errors[0]["message"], (bad, errors)
        with pytest.raises(ponder.InvalidArgument, match="data.train"):
            ponder.Pipeline(cfg)
    cfg = dict(base, model={"path": str(fifo)}, data=dict(base["data"], train={"generate": "arithmetic", "count": 4}))
    errors = ponder.validate_config(cfg)
    assert [e["path"] for e in errors] == ["model.path"] and "not a regular file" in errors[0]["message"], errors
    cfg["model"] = {"path": str(tmp_path / "dir")}
    assert "without config.json" in ponder.validate_config(cfg)[0]["message"]


FUZZ_MODEL = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "Fuzz", "model")


def hf_copy(tmp_path, name):
    import shutil
    d = tmp_path / name
    shutil.copytree(FUZZ_MODEL, d, ignore=shutil.ignore_patterns("adapter"))
    return d


def test_corrupt_tokenizer_and_config_are_refused(tmp_path):
    d = hf_copy(tmp_path, "dup_id")
    tj = json.loads((d / "tokenizer.json").read_text())
    vocab = tj["model"]["vocab"]
    a, b = list(vocab)[10], list(vocab)[11]
    vocab[b] = vocab[a]  # two strings, one id
    (d / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(ponder.FormatError, match="gives id"):
        ponder.Model.load(str(d))

    d = hf_copy(tmp_path, "added_conflict")
    tj = json.loads((d / "tokenizer.json").read_text())
    tj.setdefault("added_tokens", []).append({"id": 5, "content": "<not-token-5>", "special": True})
    (d / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(ponder.FormatError, match=r"added_tokens\[\d+\] gives id 5"):
        ponder.Model.load(str(d))

    d = hf_copy(tmp_path, "tie_string")
    cfg = json.loads((d / "config.json").read_text())
    cfg["tie_word_embeddings"] = "yes"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ponder.FormatError, match="tie_word_embeddings must be true or false"):
        ponder.Model.load(str(d))


def patch_gguf_u32(path, key, value):
    """Sets a uint32 metadata value of a GGUF file in place (key, type 4, value follow each other)."""
    import struct
    data = bytearray(open(path, "rb").read())
    k = key.encode()
    at = data.find(struct.pack("<Q", len(k)) + k)
    assert at > 0, key
    p = at + 8 + len(k)
    assert struct.unpack("<I", data[p:p + 4])[0] == 4, "not a uint32"
    data[p + 4:p + 8] = struct.pack("<I", value)
    open(path, "wb").write(bytes(data))


def test_gguf_metadata_is_checked_or_noted(tmp_path):
    src = ponder.Model.load(FUZZ_MODEL)
    gguf = str(tmp_path / "m.gguf")
    src.save(gguf, format="gguf")
    head = src.info()["head_dim"]
    for key, value, match in (("llama.rope.dimension_count", head // 2, "rope.dimension_count"),
                              ("llama.attention.value_length", head * 2, "value_length")):
        bad = str(tmp_path / (key + ".gguf"))
        open(bad, "wb").write(open(gguf, "rb").read())
        patch_gguf_u32(bad, key, value)
        with pytest.raises(ponder.Unsupported, match=match):
            ponder.Model.load(bad)
    pad = str(tmp_path / "pad.gguf")
    open(pad, "wb").write(open(gguf, "rb").read())
    patch_gguf_u32(pad, "tokenizer.ggml.padding_token_id", 0xFFFFFFFF)
    with ponder.Model.load(pad) as m:
        notes = m.info()["notes"]
        assert any("padding_token_id 4294967295" in n for n in notes), notes
        assert m.generate("12+7=", max_tokens=2, temperature=0)["completions"]


def test_bytes_the_vocabulary_cannot_spell_are_reported(model):
    """SmolLM2 has no token for some control characters: the ids still match the reference
    tokenizer (the bytes are left out), and the caller is told how many were left out."""
    text = "a\x04b\x06c\x13"
    assert model.dropped_bytes("plain text") == 0
    assert model.dropped_bytes(text) == 3
    assert model.detokenize(model.tokenize(text)) == "abc"
    r = model.generate(text, max_tokens=2, temperature=0)
    assert r["prompt_dropped_bytes"] == 3 and any("3 bytes" in n for n in r["notes"]), r.get("notes")
    assert "prompt_dropped_bytes" not in model.generate("abc", max_tokens=2, temperature=0)
