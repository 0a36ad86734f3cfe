"""Agent environments through the C ABI: a C host (json-c) and a Python class each run GRPO
steps against their own environment, whose episodes take turns misbehaving (garbage, nothing, an
exception, 1 MB, never done); each failure ends only its episode, with its reason, and the run
goes on. Multi-turn episodes are deterministic given the seed."""
import collections
import json
import os
import subprocess

import ponder
from pipeline_runs import ROOT

G = 6  # one episode of each mode per group


def config(tmp_path, environment=None, name="run"):
    c = {"kind": "grpo",
         "model": {"scratch": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2,
                               "num_kv_heads": 1, "context_length": 160, "seed": 3}},
         "data": {"train": {"generate": "arithmetic", "count": 32, "seed": 1}, "max_prompt_length": 64},
         "reward": {"rewards": ["accuracy", "format"]},
         "training": {"prompts_per_step": 2, "num_generations": G, "max_completion_length": 48, "max_steps": 2,
                      "learning_rate": 1e-3, "seed": 5, "log_completions_steps": 1},
         "output": {"dir": str(tmp_path / name)}, "threads": 2}
    if environment:
        c["environment"] = environment
    return c


def completions(tmp_path, name):
    return [json.loads(line) for line in open(tmp_path / name / "completions.jsonl")]


def frequent_char(tmp_path):
    """A character the model writes early in most completions of its first rollout: the action
    delimiter of these environments (a random model does not plan tool calls). The first action
    of an episode is the single-turn completion's start: same seed, same samples."""
    t = ponder.Trainer(config(tmp_path, name="probe"))
    t.step()
    t.close()
    rows = [r for r in completions(tmp_path, "probe") if r["step"] == 1]
    counts = collections.Counter(ch for r in rows for ch in set(r["completion"][:30]) if ch.isprintable() and ch.isascii())
    ch, n = counts.most_common(1)[0]
    assert n >= 3, counts
    return ch


def check_episodes(rows, reasons):
    """Row k was made by episode k (creation order), which behaved as mode k % G."""
    reached = collections.Counter()
    for k, r in enumerate(rows):
        mode = k % G
        if r["turns"] == 0:
            assert r["ended"] in ("length", "error"), r
            continue
        reached[mode] += 1
        want = reasons[mode]
        if want is None:
            assert "environment_error" not in r, r
        elif want in ("budget", "max_turns"):
            assert "environment_error" not in r and r["ended"] in (want, "length", "budget", "answered"), r
        else:
            assert want in r.get("environment_error", ""), (want, r)
            assert r["advantage"] == 0, r
    return reached


def test_c_host_environment(tmp_path):
    exe = str(tmp_path / "environment_driver")
    lib = os.path.join(ROOT, ".build", "release")
    subprocess.run(["cc", "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-I" + os.path.join(ROOT, "include"),
                    "-I/usr/include/json-c", "-o", exe, os.path.join(ROOT, "tests", "c", "environment_driver.c"),
                    "-L" + lib, "-lponder", "-Wl,-rpath," + lib, "-ljson-c"], check=True)
    end = frequent_char(tmp_path)
    cfg = config(tmp_path, {"name": "host", "max_turns": 3, "options": {"secret": 42}})
    json.dump(cfg, open(tmp_path / "c.json", "w"))
    r = subprocess.run([exe, str(tmp_path / "c.json"), end], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["misuse_before"] == 1 and out["steps_ok"] == 2
    assert out["created"] == out["freed"] == out["resets"] == 2 * 2 * G
    assert out["secret"] == 42 and out["bad_task"] == 0
    rows = completions(tmp_path, "run")
    assert len(rows) == 2 * 2 * G
    reached = check_episodes(rows, {0: None, 1: "step's JSON", 2: "step 1: returned no string", 3: "budget", 4: "max_turns",
                                    5: "step 1: returned status 1: host refuses"})
    assert out["steps"] > 0 and sum(reached[m] for m in (1, 2, 5)) > 0, reached
    assert out["errors"] == sum(1 for r in rows if "environment_error" in r)
    assert all(r["environment_info"] == [42] * len(r["environment_info"]) for r in rows if "environment_info" in r)


class Host:
    """A Gym-like environment whose instances take turns misbehaving (by creation order)."""
    made = 0
    action_end = None

    def __init__(self, options):
        self.mode = Host.made % G
        Host.made += 1
        self.limit = options["limit"]
        self.turns = 0

    def reset(self, seed, task):
        assert set(task) == {"prompt", "reference", "messages"}
        if self.mode == 5:
            return 42  # not a str
        return task["prompt"]

    def step(self, action):
        self.turns += 1
        if self.mode == 1:
            raise ValueError("nope")
        if self.mode == 2:
            return ["not", "a", "step"]
        if self.mode == 3:
            return "y" * (1 << 20), None, False
        if self.mode == 4:
            return {"observation": "again", "done": False}
        return f"checked {self.turns}", 0.5, self.turns >= self.limit, {"turn": self.turns}


def run_python(tmp_path, end, name):
    Host.made = 0
    Host.action_end = end
    t = ponder.Trainer(config(tmp_path, {"name": "host", "max_turns": 3, "options": {"limit": 2}}, name=name))
    t.set_environment("host", Host)
    metrics = [t.step() for _ in range(2)]
    t.close()
    return metrics, completions(tmp_path, name)


def test_python_environment_and_determinism(tmp_path):
    end = frequent_char(tmp_path)
    metrics, rows = run_python(tmp_path, end, "py")
    assert len(rows) == 2 * 2 * G
    # Mode 5's reset fails: its episode stops at once and scores nothing.
    for k, r in enumerate(rows):
        if k % G == 5:
            assert r["turns"] == 0 and r["environment_error"] == "reset: returned status 1: TypeError: reset must return a str, got int", r
    reached = check_episodes(rows, {0: None, 1: "step 1: returned status 1: ValueError: nope", 2: "step 1: step: expected a JSON object, got an array", 3: "budget",
                                    4: "max_turns", 5: "reset"})
    assert sum(reached[m] for m in (1, 2)) > 0, reached
    assert sum(m["env/errors"] for m in metrics) == sum(1 for r in rows if "environment_error" in r)
    assert any("<|im_start|>user\nchecked 1<|im_end|>" in r["completion"] for r in rows), "no episode had an observation"
    # Same seed, same episodes.
    again, rows2 = run_python(tmp_path, end, "py2")
    assert [r["completion"] for r in rows] == [r["completion"] for r in rows2]
    assert [m["loss"] for m in metrics] == [m["loss"] for m in again]


def test_example_configs_validate():
    """Every example config is valid as it is, the environment ones included."""
    d = os.path.join(ROOT, "examples", "configs")
    names = sorted(f for f in os.listdir(d) if f.endswith(".json"))
    assert {"grpo_calculator.json", "grpo_checker.json"} <= set(names)
    for f in names:
        cfg = json.load(open(os.path.join(d, f)))
        if "stages" in cfg:
            assert ponder.validate_config(cfg) == [], f


def test_python_environment_in_a_pipeline_stage(tmp_path):
    """A pipeline's grpo stage with a registered Python environment: the run refuses to start
    without it, then runs to the end with episodes in the stage's completions."""
    from pipeline_runs import tiny_config
    cfg = tiny_config(str(tmp_path / "run"), grpo_steps=2)
    grpo = next(s for s in cfg["stages"] if s["type"] == "grpo")
    grpo["environment"] = {"name": "host", "max_turns": 2, "options": {"limit": 1}}
    grpo["log_completions_steps"] = 1
    ev = next(s for s in cfg["stages"] if s["type"] == "eval")
    ev["environment"] = {"name": "host", "max_turns": 2, "options": {"limit": 1}}
    p = ponder.Pipeline(cfg)
    try:
        p.run()
        raise AssertionError("ran without its environment")
    except ponder.PonderError as e:
        assert e.status_name == "MISUSE" and "host" in e.message
    Host.made = 0
    Host.action_end = None
    p.register_environment("host", Host)
    p.run()
    p.close()
    rows = [json.loads(line) for d, _, files in os.walk(tmp_path / "run") for f in files if f == "completions.jsonl"
            for line in open(os.path.join(d, f))]
    assert rows and all("turns" in r and "ended" in r for r in rows)
    table = json.load(open(next(os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "run") for f in fs if f == "eval.json")))
    assert all("turns_mean" in r and "episode_accuracy" in r for r in table["rows"]), table["rows"]
