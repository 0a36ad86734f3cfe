"""The pipeline end to end through the CLI and the Python package: kill -9 during a GRPO stage
and resume (no gap, no repeated step, the uninterrupted run's metrics and final weights),
Ctrl-C, the refusal to overwrite a run, `ponder validate --json`, and a Python script that
drives a pipeline with events, a custom reward, cancel and resume."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline_runs import (CLI, ROOT, assert_steps_complete, comparable, metrics, reference_run, run_cli, tiny_config)


def wait_for(pred, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.005)
    return False


def grpo_checkpointed(run_dir):
    d = os.path.join(run_dir, "stages", "02-grpo")
    return os.path.isdir(d) and any(n.startswith("checkpoint-") and not n.endswith(".tmp") for n in os.listdir(d))


def test_kill9_during_grpo_then_resume(tmp_path):
    ref = reference_run()
    run_dir = str(tmp_path / "run")
    cfg = tiny_config(run_dir)
    json.dump(cfg, open(tmp_path / "c.json", "w"))
    p = subprocess.Popen([CLI, "run", str(tmp_path / "c.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: grpo_checkpointed(run_dir)), "the GRPO stage never checkpointed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = metrics(run_dir)
    grpo_steps = [r["step"] for r in before if r["stage"] == "grpo"]
    assert grpo_steps and max(grpo_steps) < 24, "killed after the GRPO stage ended: not a mid-stage kill"
    assert not os.path.exists(os.path.join(run_dir, "model.gguf"))

    r = run_cli("run", str(tmp_path / "c.json"))
    assert r.returncode != 0 and "ponder resume" in r.stderr, r.stderr
    r = run_cli("resume", run_dir)
    assert r.returncode == 0, r.stderr[-3000:]

    rows = metrics(run_dir)
    assert_steps_complete(rows, cfg)
    assert comparable(rows) == comparable(metrics(ref)), "the resumed run's metrics differ from the uninterrupted run's"
    for f in ("model/model.safetensors", "model.gguf"):
        assert open(os.path.join(run_dir, f), "rb").read() == open(os.path.join(ref, f), "rb").read(), f
    assert json.load(open(os.path.join(run_dir, "eval.json")))["rows"] == json.load(open(os.path.join(ref, "eval.json")))["rows"]
    # `ponder resume` ends by printing the evaluation table.
    table = r.stdout.splitlines()
    assert table[0].split()[:3] == ["stage", "accuracy", "format_rate"]
    assert [line.split()[0] for line in table[2:5]] == ["pretrain", "sft", "grpo"]


def test_ctrl_c_stops_with_a_checkpoint_then_resume(tmp_path):
    run_dir = str(tmp_path / "run")
    cfg = tiny_config(run_dir, grpo_steps=400)
    json.dump(cfg, open(tmp_path / "c.json", "w"))
    p = subprocess.Popen([CLI, "run", str(tmp_path / "c.json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: grpo_checkpointed(run_dir))
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-2000:]
    assert "ponder resume" in err
    state = json.load(open(os.path.join(run_dir, "state.json")))
    assert [s["status"] for s in state["stages"]] == ["done", "done", "running", "pending"]
    stopped = max(r["step"] for r in metrics(run_dir) if r["stage"] == "grpo")
    # The checkpoint is of the step it stopped at: resuming redoes nothing.
    assert os.path.isdir(os.path.join(run_dir, "stages", "02-grpo", f"checkpoint-{stopped}"))


def test_validate_json_lists_every_problem(tmp_path):
    bad = tiny_config(str(tmp_path / "x"))
    bad["stages"][2]["beta"] = -1
    bad["stages"][1]["bogus"] = 1
    bad["data"]["train"] = str(tmp_path / "missing.jsonl")
    json.dump(bad, open(tmp_path / "bad.json", "w"))
    r = run_cli("validate", str(tmp_path / "bad.json"), "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert list(out) == ["errors"]
    assert all(list(e) == ["path", "message"] for e in out["errors"])
    assert {e["path"] for e in out["errors"]} == {"stages[2].beta", "stages[1].bogus", "data.train"}
    good = tiny_config(str(tmp_path / "y"))
    json.dump(good, open(tmp_path / "good.json", "w"))
    r = run_cli("validate", str(tmp_path / "good.json"), "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"errors": []}
    assert not os.path.exists(tmp_path / "y"), "validate must not create the run directory"


def test_python_drives_a_pipeline(tmp_path):
    import ponder

    run_dir = str(tmp_path / "run")
    cfg = tiny_config(run_dir, grpo_steps=12, custom=True)
    assert ponder.validate_config(cfg) == []
    defaults = ponder.default_config()
    assert [s["type"] for s in defaults["stages"]] == ["sft", "grpo", "eval"]
    assert defaults["stages"][1]["beta"] == 0.04 and defaults["stages"][1]["num_generations"] == 7

    events, calls = [], []

    def brevity(prompt, completion, reference):
        calls.append((prompt, reference))
        return -len(completion) / 100

    def on_event(e):
        events.append(e)
        # Cancel in the middle of the GRPO stage.
        return not (e["event"] == "progress" and e.get("stage") == "grpo" and e["step"] == 5)

    p = ponder.Pipeline(cfg, on_event=on_event)
    with pytest.raises(ponder.PonderError) as err:
        p.run()  # the custom reward is not registered yet: MISUSE before anything runs
    assert err.value.status_name == "MISUSE" and "brevity" in err.value.message
    assert not events
    p.register_reward("brevity", brevity)
    with pytest.raises(ponder.PonderError) as err:
        p.run()
    assert err.value.status_name == "CANCELLED"
    assert p.status()["state"] == "cancelled"
    assert {e["event"] for e in events} >= {"stage_start", "progress", "metric", "stage_end", "log"}
    assert calls and all(ref is not None for _, ref in calls)
    p.close()

    q = ponder.Pipeline.resume(run_dir, on_event=events.append)
    q.register_reward("brevity", brevity)
    q.run()
    assert q.status()["state"] == "finished"
    rows = metrics(run_dir)
    assert_steps_complete(rows, cfg)
    grpo = [r for r in rows if r["stage"] == "grpo"]
    assert all("rewards/brevity/mean" in r for r in grpo)
    assert events[-1]["event"] == "finished" and len(events[-1]["rows"]) == 3
    assert json.load(open(os.path.join(run_dir, "eval.json")))["rows"] == events[-1]["rows"]


def test_python_ctrl_c_cancels_the_run(tmp_path):
    """KeyboardInterrupt in the waiting thread cancels the worker's run at its next step."""
    run_dir = str(tmp_path / "run")
    script = tmp_path / "drive.py"
    # A shell starts background jobs with SIGINT ignored, and Python then installs no
    # KeyboardInterrupt handler: the script restores what a terminal user has.
    script.write_text(
        "import json, signal, sys, ponder\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"cfg = json.loads({json.dumps(json.dumps(tiny_config(run_dir, grpo_steps=400)))})\n"
        "p = ponder.Pipeline(cfg, on_event=lambda e: print(json.dumps(e), flush=True))\n"
        "try:\n    p.run()\nexcept KeyboardInterrupt:\n    print('INTERRUPTED', json.dumps(p.status()), flush=True)\n    sys.exit(3)\n")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python"))
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert wait_for(lambda: grpo_checkpointed(run_dir))
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 3, err[-2000:]
    status = json.loads(out.strip().splitlines()[-1].split(" ", 1)[1])
    assert status["state"] == "cancelled"
