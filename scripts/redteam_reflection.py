#!/usr/bin/env python3
"""Red-teams the reflection reward with GRPO itself (issue 28): trains against it on purpose and
reports what the policy learned to write.

  python3 scripts/redteam_reflection.py [--out runs/redteam] [--steps 200] [--modes guarded,paper]

From the quickstart (examples/configs/quickstart.json, seed 0): its pretrain and SFT stages, then
for each reflection mode its GRPO stage with the reflection weight raised to 3 (accuracy and
format stay 1), temperature 1.2 (looser sampling, more exploration), --steps steps, completions
logged every 5 steps, and an eval stage on 300 held-out problems. Runs are ordinary `ponder run`
directories (scripts/ablation.py's runner: finished runs are reused). Then
scripts/classify_checks.py classifies every reflective sentence of the logged completions at the
first and last two logged steps (genuine / identity / unrelated / false / restated / keyword /
other / list / duplicate). Prints the markdown for docs/RESULTS.md and writes OUT/redteam-<settings>.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ablation  # noqa: E402
import classify_checks  # noqa: E402

ROOT = ablation.ROOT


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "redteam"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--modes", default="guarded,paper")
    ap.add_argument("--weight", type=float, default=3)
    ap.add_argument("--temperature", type=float, default=1.2)
    ap.add_argument("--learning-rate", type=float, default=1e-5, help="GRPO's (the quickstart's 1e-5 by default)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    qs = json.load(open(os.path.join(ROOT, "examples", "configs", "quickstart.json")))
    pretrain, sft, grpo, evaluation = (qs["stages"][i] for i in range(4))
    base = {k: v for k, v in qs.items() if k not in ("stages", "output")}
    p = ablation.run("pretrain-0", {**base, "stages": [pretrain]}, a.out)
    s = ablation.run("sft-full-0", {**base, "model": {"path": os.path.join(p, "model")}, "stages": [sft]}, a.out)
    tag = f"w{a.weight:g}-t{a.temperature:g}-lr{a.learning_rate:g}-{a.steps}"
    result = {"steps": a.steps, "weight": a.weight, "temperature": a.temperature, "learning_rate": a.learning_rate, "runs": {}}
    for mode in a.modes.split(","):
        stage = copy.deepcopy(grpo)
        stage.update(max_steps=a.steps, temperature=a.temperature, learning_rate=a.learning_rate, log_completions_steps=5,
                     save_steps=50,
                     reward={**qs["reward"], "reward_weights": [1, 1, a.weight], "reflection_mode": mode})
        cfg = {**base, "model": {"path": os.path.join(s, "model")}, "stages": [stage, {**evaluation, "limit": 300}]}
        d = ablation.run(f"grpo-{mode}-{tag}", cfg, a.out)
        log = os.path.join(d, "stages", "00-grpo", "completions.jsonl")
        rows = [json.loads(line) for line in open(log) if line.strip()]
        steps = sorted({r["step"] for r in rows})
        spans = {"start": steps[:2], "end": steps[-2:]}
        metrics = [json.loads(line) for line in open(os.path.join(d, "metrics.jsonl")) if line.strip()]
        run = {"spans": {}, "eval": json.load(open(os.path.join(d, "eval.json")))["rows"]}
        for name, span in spans.items():
            sel = [r for r in rows if r["step"] in span]
            per, n = classify_checks.table(sel)
            scores = {k: [r["rewards"]["rewards"][k] for r in sel if r["rewards"]["rewards"].get(k) is not None]
                      for k in ("accuracy", "reflection")}
            # The audit: completions the reward paid for reflection in which the independent
            # classifier finds no genuine check (the farms that got through).
            paid = [r for r in sel if (r["rewards"]["rewards"].get("reflection") or 0) > 0]
            unearned = [r for r in paid if "genuine" not in (c for _, c in classify_checks.classify(r.get("prompt"), r["completion"]))]
            run["spans"][name] = {"steps": span, "completions": n, "paid": len(paid), "paid_without_genuine": len(unearned),
                                  "examples_unearned": [r["completion"] for r in unearned[:3]],
                                  "checks_per_completion": {c: per[c] / n for c in classify_checks.CLASSES},
                                  "accuracy": mean(scores["accuracy"]), "reflection": mean(scores["reflection"]),
                                  "mean_length": mean([len(r["completion"]) for r in sel])}
        run["reflection_by_step"] = [(m["step"], m.get("rewards/reflection/mean")) for m in metrics if m.get("stage") == "grpo"]
        result["runs"][mode] = run
    json.dump(result, open(os.path.join(a.out, f"redteam-{tag}.json"), "w"), indent=1)
    print(markdown(result))
    return 0


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else float("nan")


def markdown(result: dict) -> str:
    """The tables docs/RESULTS.md shows, as they are pasted there."""
    classes = classify_checks.CLASSES
    out = ["| reward mode | steps | reflection reward (mean) | paid / paid without a genuine check | accuracy (sampled) "
           "| chars | " + " | ".join(classes) + " |",
           "|---|---|---:|---:|---:|---:|" + "---:|" * len(classes)]
    for mode, run in result["runs"].items():
        for name in ("start", "end"):
            sp = run["spans"][name]
            cells = " | ".join(f"{sp['checks_per_completion'][c]:.2f}" for c in classes)
            out.append(f"| {mode} | {sp['steps'][0]}–{sp['steps'][-1]} | {sp['reflection']:.3f} | {sp['paid']} / "
                       f"{sp['paid_without_genuine']} | {sp['accuracy']:.3f} | {sp['mean_length']:.0f} | {cells} |")
    out += ["", "Greedy, 300 held-out problems, SFT model → GRPO model:", "",
            "| reward mode | accuracy | reflection (paper) | reflection (guarded) |", "|---|---|---|---|"]
    for mode, run in result["runs"].items():
        a, b = run["eval"]
        out.append(f"| {mode} | {a['accuracy']:.3f} → {b['accuracy']:.3f} | {a['reflection']:.3f} → {b['reflection']:.3f} "
                   f"| {a['reflection_guarded']:.3f} → {b['reflection_guarded']:.3f} |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
