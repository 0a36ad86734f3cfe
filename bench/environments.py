"""Multi-turn GRPO with a built-in environment against single-turn GRPO at the same compute
(issue 11's measurement; docs/RESULTS.md records a run).

    python3 bench/environments.py SFT_MODEL ENVIRONMENT OUT.json [--seeds 3] [--steps 30]
    python3 bench/environments.py --table OUT.json     (the markdown table of docs/RESULTS.md)

SFT_MODEL: a model fine-tuned on the arithmetic generator with the environment's traces
("traces": "tool" for calculator, "retry" for checker; examples/configs/grpo_calculator.json and
grpo_checker.json make one). From it, per seed, two GRPO runs with the same steps, prompts,
generations, completion budget (all turns together), learning rate and rewards: one with the
environment, one without. Every model (the SFT one and each run's result) is then evaluated on
the same held-out problems twice, greedy: in one turn, and in episodes with the environment.
Prints and writes each evaluation's accuracy, format rate and turns per episode, the CPU and
BLAS core it ran on, and the wall time of each GRPO run.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bindings", "python"))
import ponder  # noqa: E402
from common import machine_info  # noqa: E402

EVAL = {"generate": "arithmetic", "count": 300, "seed": 11, "split": "test"}


def grpo_config(model, environment, seed, steps, out, max_completion_length=128):
    cfg = {"kind": "grpo", "model": {"path": model},
           "data": {"train": {"generate": "arithmetic", "count": 4000, "seed": 1}, "eval": EVAL},
           "reward": {"rewards": ["accuracy", "format", "reflection"], "reward_weights": [1, 1, 1], "reflection_mode": "guarded"},
           "training": {"max_steps": steps, "prompts_per_step": 8, "num_generations": 8, "gradient_accumulation_steps": 2,
                        "max_completion_length": max_completion_length, "temperature": 1.0, "beta": 0.04, "learning_rate": 2e-5,
                        "lr_scheduler_type": "constant", "seed": seed},
           "output": {"dir": out}, "threads": 2}
    if environment:
        cfg["environment"] = {"name": environment}
    return cfg


def evaluate(model, environment, tmp, budget):
    """Greedy held-out evaluation, in one turn (environment None) or in episodes."""
    t = ponder.Trainer(grpo_config(model, environment, 0, 1, os.path.join(tmp, "eval"), budget))
    m = t.evaluate()
    t.close()
    keys = ("eval_accuracy", "eval_format_rate", "eval_reflection", "eval_turns_mean", "eval_environment_errors")
    return {k[5:]: m[k] for k in keys if k in m}


def table(path):
    """The markdown rows of a run's JSON: mean ± standard deviation over seeds."""
    import statistics
    d = json.load(open(path))
    groups = {}
    for r in d["rows"]:
        key = r["model"].rsplit("_", 1)[0] if r["seed"] is not None else r["model"]
        groups.setdefault(key, []).append(r)

    def cell(rows, mode, k):
        xs = [r[mode].get(k) for r in rows if r[mode].get(k) is not None]
        if not xs:
            return "–"
        if len(xs) == 1:
            return f"{xs[0]:.3f}"
        return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}"
    out = ["| model | runs | one turn: accuracy | format | episodes: accuracy | format | turns | GRPO s/run |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, rows in groups.items():
        secs = [r["grpo_seconds"] for r in rows if "grpo_seconds" in r]
        out.append(f"| {key} | {len(rows)} | {cell(rows, 'single_turn', 'accuracy')} | {cell(rows, 'single_turn', 'format_rate')} | "
                   f"{cell(rows, 'episodes', 'accuracy')} | {cell(rows, 'episodes', 'format_rate')} | {cell(rows, 'episodes', 'turns_mean')} | "
                   f"{round(sum(secs) / len(secs)) if secs else '–'} |")
    return "\n".join(out)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--table":
        print(table(sys.argv[2]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("environment", choices=["calculator", "checker"])
    ap.add_argument("out")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--max-completion-length", type=int, default=128, help="the token budget of all turns together")
    a = ap.parse_args()
    info = machine_info(ponder.library()._name, torch_config=False)
    print(json.dumps(info), flush=True)
    tmp = tempfile.mkdtemp(prefix="ponder-env-bench-")
    rows = [{"model": "sft", "seed": None, "single_turn": evaluate(a.model, None, tmp, a.max_completion_length),
             "episodes": evaluate(a.model, a.environment, tmp, a.max_completion_length)}]
    print(json.dumps(rows[-1]), flush=True)
    for seed in range(a.seeds):
        for env in (a.environment, None):
            name = f"grpo_{env or 'single'}_{seed}"
            out = os.path.join(tmp, name)
            t = ponder.Trainer(grpo_config(a.model, env, seed, a.steps, out, a.max_completion_length))
            t0 = time.time()
            last = {}
            for _ in range(a.steps):
                last = t.step()
            seconds = time.time() - t0
            path = os.path.join(out, "final.gguf")
            m = t.model()
            m.save(path)
            m.close()
            t.close()
            rows.append({"model": name, "seed": seed, "grpo_seconds": round(seconds, 1),
                         "last_step": {k: last.get(k) for k in ("reward", "env/turns_mean", "completions/mean_length")},
                         "single_turn": evaluate(path, None, tmp, a.max_completion_length),
                         "episodes": evaluate(path, a.environment, tmp, a.max_completion_length)})
            print(json.dumps(rows[-1]), flush=True)
    json.dump({"machine": info, "environment": a.environment, "model": a.model, "steps": a.steps,
               "max_completion_length": a.max_completion_length, "rows": rows},
              open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
