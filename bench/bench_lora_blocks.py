#!/usr/bin/env python3
"""A LoRA GRPO step over SmolLM2's Q4_1 blocks against LoRA over the same weights in fp32.

  python3 bench/bench_lora_blocks.py [--tokens 128] [--generations 8] [--rounds 2] [--threads 2]

The Q4_1 file (its base stays in blocks: "LoRA over a frozen quantized base") and the F32 file
holding exactly its dequantized values (bench/quantized_files.py). One step = 1 GSM8K prompt x G
completions of --tokens new tokens (min_completion_length holds them there), rewards, reference
log-probs (beta 0.04: the base with adapters off), loss, backward, AdamW; LoRA r 16 on all seven
projections. Each run is its own process: load, a warm-up step, a timed step; rounds interleave
the two files and keep each one's fastest step. Prints the machine, a table, writes
bench/out/lora_blocks.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from common import machine_info, print_machine  # noqa: E402
import quantized_files  # noqa: E402

LIB = os.path.join(ROOT, ".build", "release", "libponder.so")


def child(a) -> dict:
    os.environ.setdefault("PONDER_LIBRARY", LIB)
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    import ponder
    with tempfile.TemporaryDirectory() as d:
        cfg = {"kind": "grpo", "model": {"path": quantized_files.ensure(a.child)},
               "lora": {"r": 16, "alpha": 32},
               "data": {"train": os.path.join(ROOT, "data", "gsm8k", "train.jsonl")},
               "reward": {"rewards": ["accuracy", "format", "length"], "reward_weights": [1, 1, 1]},
               "training": {"prompts_per_step": 1, "num_generations": a.generations, "max_completion_length": a.tokens,
                            "min_completion_length": a.tokens, "beta": 0.04, "learning_rate": 1e-5, "seed": 3,
                            "max_steps": 3},
               "output": {"dir": d}, "threads": a.threads}
        t0 = time.perf_counter()
        t = ponder.Trainer(cfg)
        load = time.perf_counter() - t0
        t.step()
        t0 = time.perf_counter()
        m = t.step()
        step = time.perf_counter() - t0
        t.close()
    return {"file": a.child, "load_seconds": load, "step_seconds": step, "rollout_seconds": m.get("rollout_seconds"),
            "reference_seconds": m.get("reference_seconds"), "update_seconds": m.get("update_seconds"),
            "mean_length": m.get("completions/mean_length"),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "out", "lora_blocks.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a)))
        return 0
    machine = machine_info(LIB, torch_config=False)
    print_machine(machine)
    best: dict = {}
    for rnd in range(a.rounds):
        for kind in ("Q4_1", "F32"):
            quantized_files.ensure(kind)
            p = subprocess.run([sys.executable, __file__, "--child", kind, "--tokens", str(a.tokens), "--generations",
                                str(a.generations), "--threads", str(a.threads)], capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(p.stderr[-2000:])
            r = json.loads(p.stdout.strip().splitlines()[-1])
            print(f"[bench] round {rnd + 1} {kind}: step {r['step_seconds']:.2f} s, peak RSS {r['peak_rss_mib']:.0f} MiB",
                  file=sys.stderr)
            if kind not in best or r["step_seconds"] < best[kind]["step_seconds"]:
                best[kind] = r
    q, f = best["Q4_1"], best["F32"]
    rows = ["| LoRA GRPO step (1 x %d x %d tokens) | Q4_1 blocks | F32 | Q4_1 / F32 |" % (a.generations, a.tokens),
            "|---|---|---|---|"]
    for k, label in (("step_seconds", "step (s)"), ("rollout_seconds", "rollout (s)"), ("reference_seconds", "reference (s)"),
                     ("update_seconds", "update (s)"), ("peak_rss_mib", "peak RSS (MiB)"), ("load_seconds", "load (s)")):
        if q.get(k) is not None and f.get(k):
            rows.append(f"| {label} | {q[k]:.2f} | {f[k]:.2f} | {q[k] / f[k]:.2f} |")
    md = "\n".join(rows)
    print(md)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump({"machine": machine, "settings": vars(a), "results": best, "table_markdown": md,
                   "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
