"""A training process killed with SIGKILL mid-run resumes from its newest checkpoint and
reproduces the uninterrupted run's losses exactly."""
import json
import os
import signal
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(ROOT, ".build", "release", "ponder-cli")


def config(out):
    return {"model": {"scratch": {"hidden_size": 64, "intermediate_size": 128, "num_layers": 2, "num_heads": 4,
                                  "num_kv_heads": 2, "context_length": 128, "seed": 2}},
            "data": {"train": {"generate": "arithmetic", "count": 400, "seed": 4}, "max_length": 96},
            "training": {"batch_size": 8, "max_steps": 60, "learning_rate": 2e-3, "seed": 1},
            "output": {"dir": out, "save_steps": 5, "save_total_limit": 2}, "threads": 2}


def losses(path):
    rows = [json.loads(line) for line in open(path)]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_sigkill_then_resume(tmp_path):
    ref_dir, run_dir = str(tmp_path / "ref"), str(tmp_path / "run")
    for d in (ref_dir, run_dir):
        os.makedirs(d)
    json.dump(config(ref_dir), open(tmp_path / "ref.json", "w"))
    json.dump(config(run_dir), open(tmp_path / "run.json", "w"))
    subprocess.run([CLI, "sft", str(tmp_path / "ref.json")], check=True, capture_output=True)
    ref = losses(os.path.join(ref_dir, "metrics.jsonl"))
    assert len(ref) == 60

    p = subprocess.Popen([CLI, "sft", str(tmp_path / "run.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not any(n.startswith("checkpoint-1") for n in os.listdir(run_dir)):
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed_at = max(losses(os.path.join(run_dir, "metrics.jsonl")))
    assert killed_at < 60, "the run finished before it could be killed"
    subprocess.run([CLI, "sft", str(tmp_path / "run.json")], check=True, capture_output=True)
    resumed = losses(os.path.join(run_dir, "metrics.jsonl"))  # appended: later lines win
    assert sorted(resumed) == list(range(1, 61))
    assert resumed == ref, [(s, resumed[s], ref[s]) for s in ref if resumed[s] != ref[s]][:3]
