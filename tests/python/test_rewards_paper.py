"""Ponder's rewards against the seed paper's own definitions run by CPython (paper_rewards.py),
ponder.score, and the `ponder score` command's line-for-line contract."""
import json
import os
import random
import subprocess

import pytest

import paper_rewards as paper
import ponder
from conftest import ROOT

TABLE = os.path.join(ROOT, "Tests", "Fixtures", "rewards", "reflection_paper.jsonl")
CLI = os.environ.get("PONDER_CLI", os.path.join(ROOT, ".build", "release", "ponder-cli"))


def counts_of(result):
    return [int(kv.split("=")[1]) for kv in result["reasons"]["reflection"].split()]


def test_hand_derived_table_matches_the_paper_code():
    rows = [json.loads(line) for line in open(TABLE, encoding="utf-8")]
    assert len(rows) >= 50
    got = ponder.score([r["completion"] for r in rows], rewards=["reflection"], reflection_mode="paper")
    for r, g in zip(rows, got):
        assert paper.reflection_counts(r["completion"]) == r["counts"], r["why"]
        assert paper.reflection_reward(r["completion"]) == r["reflection"], r["why"]
        assert counts_of(g) == r["counts"] and g["rewards"]["reflection"] == r["reflection"], r


PIECES = ["backtrack", "error", "errors", "fix", "mistake", "re-evaluate", "re-evaluation", "re-evalation", "flawed",
          "incorrect", "approach", "step", "steps", "verify", "check", "checks", "confirm", "test", "cross", "re", "-",
          "val", "idate", "idation", "validate", "unit", "dimension", "analysis", "edge", "case", "boundary", "stage",
          "phase", "subtask", "decompose", "in", "into", "to", "3", "\u0663", "milestone", "checkpoint", "track",
          "progress", "at", "on", "target", "goal", "required", "work", "working", "backwards", "reverse", "engineer",
          "logic", "deduce", "from", "final", "outcome", "ing", " ", "  ", "\n", "\t", "\u00a0", "\u3000", ".", "_",
          "\u00e9", "\u0130", "\u212a", "\u4e2d", "STEP", "Check", "VERIFY", "x", "<think>", "</think>"]


def test_random_text_matches_the_paper_code():
    rng = random.Random(20261130)
    texts = ["".join(rng.choice(PIECES) + rng.choice(["", " ", " ", "\n"]) for _ in range(rng.randint(0, 40)))
             for _ in range(2500)]
    texts += ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 30))) for _ in range(2500)]
    got = ponder.score(texts, rewards=["reflection"], reflection_mode="paper")
    for t, g in zip(texts, got):
        assert counts_of(g) == paper.reflection_counts(t), repr(t)
        assert g["rewards"]["reflection"] == paper.reflection_reward(t), repr(t)


def test_paper_format_matches_the_paper_regex():
    rng = random.Random(7)
    bits = ["<think>", "</think>", "<answer>", "</answer>", "a", "42", " ", "\n", "\t", "\u00a0", "<", ">", "/",
            "\r\n", "\u2028", "\u3000"]

    def noise(n):
        return "".join(rng.choice(bits) for _ in range(rng.randint(0, n)))

    texts = [noise(14) for _ in range(3000)]
    texts += [f"{noise(1)}<think>{noise(4)}</think>{noise(2)}<answer>{noise(4)}</answer>{noise(2)}" for _ in range(3000)]
    got = ponder.score(texts, rewards=["format"], format_mode="paper")
    want = [paper.format_reward(t) for t in texts]
    assert [g["rewards"]["format"] for g in got] == want
    assert 300 < sum(want) < len(texts) - 300  # both verdicts well represented


def test_score_binding_errors():
    with pytest.raises(ponder.PonderError) as e:
        ponder.score(["x"], rewards=["acuracy"])
    assert e.value.status_name == "INVALID_ARGUMENT" and "rewards[0]" in e.value.message
    assert ponder.score([]) == []


def test_cli_contract():
    if not os.path.exists(CLI):
        pytest.skip(f"{CLI} not built (swift build -c release)")
    lines = [
        json.dumps({"completion": "<think>\n48 + 24 = 72. Let me verify: 72 - 24 = 48.\n</think>\n<answer>72</answer>",
                    "reference": "#### 72"}),
        "not json",
        "",
        json.dumps({"reference": "5"}),
        json.dumps({"completion": "The answer is 5.", "prompt": "What is 2 + 3?"}),
    ]
    p = subprocess.run([CLI, "score"], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60)
    out = [json.loads(line) for line in p.stdout.splitlines()]
    assert p.returncode == 1 and len(out) == len(lines)
    assert out[0] == {"rewards": {"accuracy": 1, "format": 1, "reflection": 0.21}, "total": 2.21,
                      "reasons": {"accuracy": "correct", "format": "ok",
                                  "reflection": "backtracking=0 verification=1 (72 - 24 = 48) subgoals=0 backward_chaining=0"}}
    assert out[1]["error"].startswith("line 2: invalid JSON")
    assert out[2]["error"].startswith("line 3: ")
    assert out[3]["error"].startswith("line 4: ") and "completion" in out[3]["error"]
    assert out[4]["rewards"] == {"accuracy": None, "format": 0, "reflection": 0} and out[4]["total"] == 0
    p = subprocess.run([CLI, "score", "--rewards", "reflection", "--reflection-mode", "paper"],
                       input=lines[0] + "\n", capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and json.loads(p.stdout)["rewards"] == {"reflection": 0.21}
    p = subprocess.run([CLI, "score", "--reflection-mode", "sloppy"], input="", capture_output=True, text=True)
    # The error names the flag the user typed (issue 23), not the JSON key behind it.
    assert p.returncode == 2 and "--reflection-mode" in p.stderr
