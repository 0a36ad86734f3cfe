"""The ctypes binding: results, and bad input reported as PonderError (never a crash)."""
import json

import pytest

import ponder
from conftest import MODEL


def test_version():
    assert ponder.version() == "0.1.0"
    assert ponder.library().ponder_version_number() == 100


def test_status_names_match_the_header():
    """The binding's status names are the header's enum (PonderError.Code is the one list;
    CAPITests checks the header against it)."""
    import pathlib
    import re
    header = (pathlib.Path(__file__).parents[2] / "include" / "ponder.h").read_text()
    enum = {int(v): n for n, v in re.findall(r"PONDER_ERR_(\w+) = (\d+)", header)}
    enum[0] = "OK"
    assert ponder.STATUS_NAMES == enum


def test_generate_and_stream(model):
    pieces = []
    r = model.generate("The capital of France is", max_tokens=12, temperature=0,
                       on_token=lambda s, t, text: pieces.append(text))
    c = r["completions"][0]
    assert "Paris" in c["text"]
    assert "".join(pieces) == c["text"]
    assert len(c["token_ids"]) == len(c["logprobs"]) <= 12
    assert all(lp <= 0 for lp in c["logprobs"])
    assert c["finish_reason"] in ("stop", "eos", "length")
    assert r["prompt_tokens"] == len(model.tokenize("The capital of France is"))


def test_group_with_messages(model):
    r = model.generate(messages=[{"role": "user", "content": "Give me a number."}], max_tokens=8, n=3,
                       temperature=1.0, seed=11)
    assert len(r["completions"]) == 3
    again = model.generate(messages=[{"role": "user", "content": "Give me a number."}], max_tokens=8, n=1,
                           temperature=1.0, seed=12)
    assert again["completions"][0]["token_ids"] == r["completions"][1]["token_ids"]


def test_sampling_keys_may_be_grouped(model):
    flat = model.generate(prompt="Count: 1, 2,", max_tokens=8, temperature=0.7, top_k=20, seed=5)
    grouped = model.generate(prompt="Count: 1, 2,", max_tokens=8, sampling={"temperature": 0.7, "top_k": 20, "seed": 5})
    assert grouped["completions"][0]["token_ids"] == flat["completions"][0]["token_ids"]


@pytest.mark.parametrize("request_, status, fragment", [
    ({"prompt": "hi", "top_p": 0}, "INVALID_ARGUMENT", "top_p: expected a number in (0, 1]"),
    ({"prompt": "hi", "n": "3"}, "INVALID_ARGUMENT", "n: expected an integer"),
    ({"prompt": "hi", "bogus": True}, "INVALID_ARGUMENT", "bogus: unknown key"),
    ({"messages": "hi"}, "INVALID_ARGUMENT", "messages: expected an array"),
    ({"messages": [{"role": "user", "content": 5}]}, "INVALID_ARGUMENT", "messages[0].content: expected a string"),
    ({"prompt": "hi", "seed": -1}, "INVALID_ARGUMENT", "seed: expected a non-negative integer"),
    ({}, "INVALID_ARGUMENT", "needs \"prompt\""),
    ({"prompt": "hi", "sampling": {"top_p": 0}}, "INVALID_ARGUMENT", "sampling.top_p: expected a number in (0, 1]"),
    ({"prompt": "hi", "sampling": {"top_k": 5, "beam": 2}}, "INVALID_ARGUMENT", "sampling.beam: unknown key"),
    ({"prompt": "hi", "top_k": 5, "sampling": {"top_k": 5}}, "INVALID_ARGUMENT", "sampling.top_k: also given at the top level"),
    ({"prompt": "hi", "sampling": 0.5}, "INVALID_ARGUMENT", "sampling: expected an object"),
])
def test_bad_requests(model, request_, status, fragment):
    with pytest.raises(ponder.PonderError) as e:
        model.generate(**request_)
    assert e.value.status_name == status
    assert fragment in e.value.message


def test_malformed_json_and_utf8(model):
    lib = ponder.library()
    import ctypes
    out = ctypes.c_void_p()
    status = lib.ponder_generate(model._h, b'{"prompt": "hi", "max_tokens": }', ctypes.byref(out))
    assert ponder.STATUS_NAMES[status] == "PARSE"
    assert "byte offset" in lib.ponder_last_error().decode()
    status = lib.ponder_generate(model._h, b'{"prompt": "\xff"}', ctypes.byref(out))
    assert ponder.STATUS_NAMES[status] == "PARSE"
    assert "byte offset 12" in lib.ponder_last_error().decode()
    with pytest.raises(ponder.PonderError) as e:
        model.tokenize("bad \udcff surrogate")
    assert e.value.status_name == "PARSE" and "byte offset 4" in e.value.message
    with pytest.raises(TypeError):
        model.tokenize(b"bytes")


def test_bad_ids_and_load_errors(model):
    with pytest.raises(ponder.PonderError) as e:
        model.detokenize([1, 2, -5])
    assert "ids[2]" in e.value.message
    with pytest.raises(ponder.PonderError) as e:
        ponder.Model.load("/no/such/model.gguf")
    assert e.value.status_name == "IO"
    with pytest.raises(ponder.PonderError) as e:
        ponder.Model.load(MODEL, threads="two")
    assert "threads" in e.value.message


def test_callback_exception_propagates(model):
    def boom(s, t, text):
        raise RuntimeError("stop here")
    with pytest.raises(RuntimeError, match="stop here"):
        model.generate("Hello", max_tokens=5, on_token=boom)
    with pytest.raises(ponder.PonderError) as e:
        model.generate("Hello", max_tokens=5, on_token=lambda *a: False)
    assert e.value.status_name == "CANCELLED"


def test_closed_model_is_misuse():
    m = ponder.Model.load(MODEL)
    m.close()
    with pytest.raises(ponder.PonderError) as e:
        m.tokenize("x")
    assert e.value.status_name == "MISUSE"


def test_ids_are_range_checked(model):
    """An id past the C API's int32 is an error naming it, never a wrapped id."""
    for bad in ([2**40], [2**32 + 28120], [-2**31 - 1]):
        with pytest.raises(ponder.InvalidArgument, match=r"ids\[0\]"):
            model.detokenize(bad)
    with pytest.raises(ponder.InvalidArgument, match=r"ids\[1\]"):
        model.detokenize([1, "2"])
    assert model.detokenize(model.tokenize("hello")) == "hello"


def test_errors_are_subclassed_by_status(model):
    with pytest.raises(ponder.InvalidArgument) as e:
        model.generate(prompt="hi", temperature="hot")
    assert e.value.status == 1 and isinstance(e.value, ponder.PonderError) and isinstance(e.value, ValueError)
    with pytest.raises(ponder.IOFailure) as e:
        ponder.Model.load("/nonexistent/model.gguf")
    assert e.value.status == 3 and isinstance(e.value, OSError)
    with pytest.raises(ponder.ParseError):
        model.generate(prompt="hi", n=float("nan"))


def test_public_api_is_listed_and_documented():
    """__all__ names every public class and function, and each has a docstring, as does each
    public method."""
    import inspect
    public = {n for n, v in vars(ponder).items() if not n.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
              and getattr(v, "__module__", "") == "ponder"}
    assert public <= set(ponder.__all__), public - set(ponder.__all__)
    undocumented = []
    for name in ponder.__all__:
        obj = getattr(ponder, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            undocumented.append(name)
        if inspect.isclass(obj):
            for k, v in vars(obj).items():
                f = v.__func__ if isinstance(v, (classmethod, staticmethod)) else v
                if (not k.startswith("_") or k in ("__iter__", "__next__")) and inspect.isfunction(f) and not f.__doc__:
                    undocumented.append(f"{name}.{k}")
    assert not undocumented, undocumented


def test_stream_yields_what_generate_returns(model):
    req = dict(max_tokens=24, temperature=0.8, seed=7, chat=True)
    whole = model.generate("Count to five.", **req)
    s = model.stream("Count to five.", **req)
    pieces = list(s)
    assert all(isinstance(p, ponder.Piece) and p.sequence == 0 for p in pieces)
    assert "".join(p.text for p in pieces) == whole["completions"][0]["text"]
    assert [p.token for p in pieces] == whole["completions"][0]["token_ids"][:len(pieces)]
    assert s.result["completions"][0]["text"] == whole["completions"][0]["text"]
    # Leaving early cancels; the model stays usable.
    s = model.stream("Count to five.", max_tokens=64, temperature=0)
    next(iter(s))
    s.close()
    assert model.generate("2+2=", max_tokens=2, temperature=0)["completions"]


def test_default_max_tokens_fits_a_short_context(tmp_path):
    """The default max_tokens (256) is cut to what a 64-token context leaves, and the result
    says so; an explicit value that does not fit stays an error."""
    sys_path = __import__("sys").path
    sys_path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from pipeline_runs import ROOT  # noqa: F401
    cfg = {"kind": "sft", "model": {"scratch": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "context_length": 64}},
           "data": {"train": {"generate": "arithmetic", "count": 4}}, "training": {"max_steps": 1}}
    with ponder.Trainer(cfg) as t:
        m = t.model()
        r = m.generate("What is 2 + 3?")
        assert r["notes"] and "max_tokens" in r["notes"][0]
        assert len(r["completions"][0]["token_ids"]) <= 64
        with pytest.raises(ponder.InvalidArgument, match="max_tokens"):
            m.generate("What is 2 + 3?", max_tokens=256)
