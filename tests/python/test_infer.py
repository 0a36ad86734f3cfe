"""Model.infer: the strategies through ctypes, Python callables as scorers, streaming, errors."""
import os

import pytest

import ponder

from conftest import ROOT

TINY = os.path.join(ROOT, "Tests", "Fuzz", "model")


@pytest.fixture(scope="module")
def tiny():
    if not os.path.exists(os.path.join(TINY, "model.safetensors")):
        pytest.skip("Tests/Fuzz/model weights not generated: python3 scripts/make_fuzz_seeds.py")
    m = ponder.Model.load(TINY)
    yield m
    m.close()


def test_vote_counts_match_the_candidates_answers(model):
    r = model.infer("What is 15 + 27? Answer with the number.", chat=True, strategy="vote", n=6, seed=3,
                    temperature=0.8, max_tokens=64)
    answers = [c["answer"] for c in r["candidates"]]
    assert len(answers) == 6
    counts = {}
    for a in answers:
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
    assert r["votes"] == counts  # SmolLM2's answers here are plain integers: equal text = equivalent
    assert counts and counts[r["answer"]] == max(counts.values())
    assert all(set(c["scores"]) == {"format", "reflection", "agreement", "mean_logprob"} for c in r["candidates"])


def test_best_of_n_with_python_scorers(tiny):
    seen = []

    def length(prompt, completion):
        seen.append(prompt)
        return len(completion)

    weights = {"format": 0, "reflection": 0, "agreement": 0, "mean_logprob": 0}
    r = tiny.infer("12 + 7 =", strategy="best_of_n", n=5, seed=1, max_tokens=12, stop=["\n"], scorer_weights=weights,
                   scorers={"len": (length, 1.0), "none": lambda p, c: None})
    lens = [c["scores"]["len"] for c in r["candidates"]]
    assert lens == [len(c["text"]) for c in r["candidates"]]
    assert all(c["scores"]["none"] is None for c in r["candidates"])
    assert r["selected"] == lens.index(max(lens))
    assert seen == ["12 + 7 ="] * 5

    def boom(prompt, completion):
        raise ValueError("scorer failed")
    with pytest.raises(ValueError, match="scorer failed"):
        tiny.infer("1", strategy="best_of_n", n=2, max_tokens=2, scorers={"boom": boom})


def test_reflect_streams_and_reports(tiny):
    pieces = {}

    def on_token(seq, tok, text):
        pieces[seq] = pieces.get(seq, "") + text
    r = tiny.infer("1", strategy="reflect", n=2, seed=4, max_tokens=40, think_end=" ", cues=["Wait,", "Hmm"],
                   max_reflections=2, on_token=on_token)
    assert [pieces[i] for i in range(2)] == [c["text"] for c in r["candidates"]]
    assert "votes" in r and "reflections" in r
    for c in r["candidates"]:
        assert len(c["reflections"]) <= 2
        for x in c["reflections"]:
            assert x["cue"] in ("Wait,", "Hmm") and x["ended_by"] in ("think_end", "end_of_turn")
            assert c["forced_answer"] is None or x["at_token"] < c["forced_answer"]["at_token"]


@pytest.mark.parametrize("request_, fragment", [
    ({"strategy": "majority"}, "strategy"),
    ({"strategy": "vote", "n": 0}, "n: expected an integer in [1, 1024]"),
    ({"strategy": "reflect", "min_thinking_tokens": 9, "max_thinking_tokens": 3}, "min_thinking_tokens"),
    ({"strategy": "reflect", "cues": []}, "cues: empty list"),
])
def test_bad_requests_name_the_key(tiny, request_, fragment):
    with pytest.raises(ponder.PonderError) as e:
        tiny.infer("1", **request_)
    assert e.value.status_name == "INVALID_ARGUMENT" and fragment in e.value.message
