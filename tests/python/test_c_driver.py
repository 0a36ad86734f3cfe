"""A C program (json-c for the events) drives a pipeline through ponder.h: defaults, validation,
events, a custom reward, cancel from the callback and from another thread, resume, the end."""
import json
import os
import subprocess

from pipeline_runs import ROOT, assert_steps_complete, metrics, tiny_config


def test_c_program_drives_a_pipeline(tmp_path):
    exe = str(tmp_path / "pipeline_driver")
    lib = os.path.join(ROOT, ".build", "release")
    subprocess.run(["cc", "-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-I" + os.path.join(ROOT, "include"),
                    "-I/usr/include/json-c", "-o", exe, os.path.join(ROOT, "tests", "c", "pipeline_driver.c"),
                    "-L" + lib, "-lponder", "-Wl,-rpath," + lib, "-ljson-c", "-lpthread"], check=True)
    run_dir = str(tmp_path / "run")
    cfg = tiny_config(run_dir, grpo_steps=16, custom=True)
    json.dump(cfg, open(tmp_path / "c.json", "w"))
    r = subprocess.run([exe, str(tmp_path / "c.json")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["errors"] == 3  # stages[0].beta, stages[0].data (no data anywhere), bogus
    assert (out["first"], out["second"], out["third"]) == (7, 7, 0)  # CANCELLED, CANCELLED, OK
    assert out["first_state"] == "cancelled" and out["third_state"] == "finished"
    assert out["finished"] == 1 and out["stage_starts"] >= 5
    assert out["reward_calls"] > 0 and out["reward_null_reference"] == 0
    rows = metrics(run_dir)
    assert_steps_complete(rows, cfg)
    assert all("rewards/brevity/mean" in r for r in rows if r["stage"] == "grpo")
    assert out["metrics"] == len(rows), "one metric event per logged step (steps redone after a cancel excluded)"
