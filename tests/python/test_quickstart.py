"""The quickstart pipeline end to end, exactly as committed (about 8 minutes on 2 idle cores): the
evaluation table has a row per trained model, SFT beats the pretrained base and GRPO beats SFT,
each by more than two paired standard errors on every held-out problem of the generator. Built
once per test run (cached by its config's hash under .build/test-cache)."""
import hashlib
import json
import os
import shutil

import pytest

from pipeline_runs import CACHE, CLI, ROOT, run_cli


def committed():
    return json.load(open(os.path.join(ROOT, "examples", "configs", "quickstart.json")))


@pytest.fixture(scope="module")
def quickstart_run():
    cfg = committed()
    key = hashlib.sha256((json.dumps(cfg, sort_keys=True) + str(os.stat(CLI).st_mtime_ns)).encode()).hexdigest()[:16]
    out = os.path.join(CACHE, "quickstart-" + key)
    if not os.path.exists(os.path.join(out, "report.html")):
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(CACHE, exist_ok=True)
        cfg["output"]["dir"] = out
        json.dump(cfg, open(out + ".json", "w"))
        r = run_cli("run", out + ".json")
        assert r.returncode == 0, r.stderr[-3000:]
    return out


def rows(run):
    return {r["stage"]: r for r in json.load(open(os.path.join(run, "eval.json")))["rows"]}


def change(run, k, stages):
    """The eval stage's k-th comparison (paired over the same problems), checked against the rows."""
    c = json.load(open(os.path.join(run, "stages", "03-eval", "eval.json")))["comparisons"][k]
    assert (c["from"], c["to"]) == stages
    by = rows(run)
    assert c["accuracy_change"] == pytest.approx(by[stages[1]]["accuracy"] - by[stages[0]]["accuracy"])
    print(f"{stages[0]} -> {stages[1]}: {c['accuracy_change']:+.3f} ± {c['paired_stderr']:.3f}")
    return c


def test_eval_table_and_sft_beats_base(quickstart_run):
    table = json.load(open(os.path.join(quickstart_run, "eval.json")))
    assert [r["stage"] for r in table["rows"]] == ["pretrain", "sft", "grpo"]
    for r in table["rows"]:
        assert set(r) >= {"stage", "model", "accuracy", "format_rate", "reflection", "mean_length", "n"}
        assert r["n"] > 800, "every held-out problem (~830)"
    by = rows(quickstart_run)
    base, sft = by["pretrain"], by["sft"]
    c = change(quickstart_run, 0, ("pretrain", "sft"))
    assert c["accuracy_change"] > 2 * c["paired_stderr"], c
    assert base["format_rate"] < 0.1 < 0.9 < sft["format_rate"], "the answer format is SFT's to teach"
    assert os.path.exists(os.path.join(quickstart_run, "model.gguf"))


def test_grpo_beats_sft(quickstart_run):
    c = change(quickstart_run, 1, ("sft", "grpo"))
    assert c["accuracy_change"] > 2 * c["paired_stderr"], c
