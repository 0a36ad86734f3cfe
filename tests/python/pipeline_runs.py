"""Tiny pipelines for the tests, and one uninterrupted reference run shared by every test of a
test run (built once, cached under .build/test-cache by its config's hash)."""
import hashlib
import json
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(ROOT, ".build", "release", "ponder-cli")
CACHE = os.path.join(ROOT, ".build", "test-cache")

# Timing fields differ between any two runs; everything else must not.
TIMING = {"tokens_per_second", "rollout_seconds", "reference_seconds", "update_seconds", "rollout_tokens_per_second"}


def tiny_config(out, grpo_steps=24, custom=False, save_steps=3):
    reward = {}
    if custom:
        reward = {"reward": {"rewards": ["accuracy", "format", "reflection", "brevity"], "reward_weights": [1, 1, 1, 0.5],
                             "custom": ["brevity"]}}
    return {
        "model": {"scratch": {"hidden_size": 48, "intermediate_size": 96, "num_layers": 2, "num_heads": 2,
                              "num_kv_heads": 1, "context_length": 160, "seed": 1}},
        "data": {"train": {"generate": "arithmetic", "count": 96, "seed": 1},
                 "eval": {"generate": "arithmetic", "count": 12, "seed": 2, "split": "test"}},
        **reward,
        "output": {"dir": out, "save_steps": save_steps},
        "seed": 3, "threads": 2,
        "stages": [
            {"type": "pretrain", "max_steps": 6, "batch_size": 4, "max_length": 128, "learning_rate": 2e-3},
            {"type": "sft", "max_steps": 6, "batch_size": 4, "max_length": 128, "learning_rate": 2e-3},
            {"type": "grpo", "max_steps": grpo_steps, "prompts_per_step": 2, "num_generations": 4,
             "max_completion_length": 32, "learning_rate": 1e-3, "log_completions_steps": 4},
            {"type": "eval", "max_new_tokens": 32, "num_samples": 2},
        ],
    }


def run_cli(*args, **kw):
    return subprocess.run([CLI, *args], capture_output=True, text=True, **kw)


def reference_run():
    """The tiny pipeline run to its end without interruption (once per config, cached)."""
    cfg = tiny_config("PLACEHOLDER")
    key = hashlib.sha256((json.dumps(cfg, sort_keys=True) + str(os.stat(CLI).st_mtime_ns)).encode()).hexdigest()[:16]
    out = os.path.join(CACHE, "pipeline-" + key)
    if os.path.exists(os.path.join(out, "report.html")):
        return out
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(CACHE, exist_ok=True)
    cfg["output"]["dir"] = out
    path = out + ".json"
    json.dump(cfg, open(path, "w"))
    r = run_cli("run", path)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def metrics(run_dir):
    return [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]


def comparable(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def assert_steps_complete(rows, config):
    """Every stage's steps 1..max_steps, each exactly once, in order."""
    for i, st in enumerate(config["stages"]):
        if st["type"] == "eval":
            continue
        steps = [r["step"] for r in rows if r["stage_index"] == i]
        assert steps == list(range(1, st["max_steps"] + 1)), (st["type"], steps)
    assert [r["stage_index"] for r in rows] == sorted(r["stage_index"] for r in rows)
