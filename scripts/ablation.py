#!/usr/bin/env python3
"""The paper's table in miniature, with the ablation the paper never ran (issue 9): SFT full / LoRA /
none × GRPO with the reflection reward off / `paper` / `guarded`, at quickstart scale, over seeds.

  python3 scripts/ablation.py [--seeds 0,1,2] [--out runs/ablation] [--steps-scale 1.0]

Everything comes from examples/configs/quickstart.json (model shape, data, stage options); per seed s
(the model's initialisation and the pipeline's seed):
  1. pretrain          the quickstart's stage 1                      -> pretrain-s/model (HF directory)
  2. sft-{full,lora}   the quickstart's SFT stage from that model     (none: the pretrained model)
  3. grpo-*            the quickstart's GRPO stage from each SFT model, reflection weight 0 ("off")
                       or 1 with reflection_mode "paper" / "guarded", then its eval stage, which
                       evaluates the GRPO model and the model it started from on the same problems.
Each run is an ordinary `ponder run` directory with its config beside it (OUT/<name>.json), so any
row can be repeated alone; finished runs are reused, so the script can be stopped and run again.
`--steps-scale` shortens every stage and evaluates 50 problems (a smoke run of the script itself).

Prints the markdown table for docs/RESULTS.md (held-out accuracy, format rate, reflection score in
paper mode, mean length; mean ± half the range over seeds) and writes OUT/ablation.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(ROOT, ".build", "release", "ponder-cli")
SFT_MODES = ["full", "lora", "none"]
REFLECTION = {"off": {"reward_weights": [1, 1, 0], "reflection_mode": "guarded"},
              "paper": {"reward_weights": [1, 1, 1], "reflection_mode": "paper"},
              "guarded": {"reward_weights": [1, 1, 1], "reflection_mode": "guarded"}}
# LoRA on all seven projections (the default), rank 16, at twice the full run's learning rate:
# adapters start at zero and need larger steps than full fine-tuning (an untuned choice).
LORA = {"r": 16, "alpha": 32}
LORA_LR = 2e-3


def scaled(stage: dict, scale: float) -> dict:
    s = dict(stage)
    if scale != 1.0:
        if "max_steps" in s:
            s["max_steps"] = max(1, int(s["max_steps"] * scale))
        else:
            s["max_steps"] = max(1, int(250 * s.pop("num_train_epochs", 1) * scale))
        if "save_steps" in s:
            s["save_steps"] = max(1, min(s["save_steps"], s["max_steps"]))
    return s


def run(name: str, cfg: dict, out: str) -> str:
    """Runs one pipeline (or reuses its finished run) and returns its directory."""
    d = os.path.join(out, name)
    cfg = copy.deepcopy(cfg)
    cfg["output"] = {"dir": d}
    path = d + ".json"
    if os.path.exists(os.path.join(d, "state.json")):
        if json.load(open(os.path.join(d, "state.json"))).get("finished"):
            return d
        args = ["resume", d]
    else:
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        args = ["run", path]
    t0 = time.time()
    print(f"[ablation] {name} ...", file=sys.stderr, flush=True)
    r = subprocess.run([CLI] + args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"[ablation] {name} failed:\n{r.stderr[-3000:]}")
    print(f"[ablation] {name}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return d


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "ablation"))
    ap.add_argument("--steps-scale", type=float, default=1.0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    qs = json.load(open(os.path.join(ROOT, "examples", "configs", "quickstart.json")))
    pretrain, sft, grpo, evaluation = (qs["stages"][i] for i in range(4))
    assert [pretrain["type"], sft["type"], grpo["type"], evaluation["type"]] == ["pretrain", "sft", "grpo", "eval"]
    seeds = [int(x) for x in a.seeds.split(",")]
    results = []
    for seed in seeds:
        base = {k: v for k, v in qs.items() if k not in ("stages", "output")}
        base["seed"] = seed
        scratch = copy.deepcopy(base["model"])
        scratch["scratch"]["seed"] = seed
        p = run(f"pretrain-{seed}", {**base, "model": scratch, "stages": [scaled(pretrain, a.steps_scale)]}, a.out)
        starts = {"none": os.path.join(p, "model")}
        for mode in ("full", "lora"):
            stage = {**scaled(sft, a.steps_scale), "mode": mode}
            if mode == "lora":
                stage.update(lora=LORA, learning_rate=LORA_LR)
            d = run(f"sft-{mode}-{seed}", {**base, "model": {"path": starts["none"]}, "stages": [stage]}, a.out)
            starts[mode] = os.path.join(d, "model")
        for mode in SFT_MODES:
            for refl, reward in REFLECTION.items():
                cfg = {**base, "model": {"path": starts[mode]}, "reward": {**qs["reward"], **reward},
                       "stages": [scaled(grpo, a.steps_scale),
                                  evaluation if a.steps_scale == 1.0 else {**evaluation, "limit": 50}]}
                d = run(f"grpo-{mode}-{refl}-{seed}", cfg, a.out)
                start, trained = json.load(open(os.path.join(d, "eval.json")))["rows"]  # the starting model, then GRPO's
                results.append({"seed": seed, "sft": mode, "reflection": refl, "start": start, "grpo": trained})
    json.dump({"seeds": seeds, "steps_scale": a.steps_scale, "results": results},
              open(os.path.join(a.out, "ablation.json"), "w"), indent=1)

    def stat(values):
        m = sum(values) / len(values)
        return f"{m:.3f} ± {(max(values) - min(values)) / 2:.3f}"

    print(f"| SFT | reflection reward | accuracy after SFT | accuracy after GRPO | format rate | reflection (paper) | mean length |")
    print("|---|---|---|---|---|---|---|")
    for mode in SFT_MODES:
        for refl in REFLECTION:
            rs = [r for r in results if r["sft"] == mode and r["reflection"] == refl]
            print(f"| {mode} | {refl} | {stat([r['start']['accuracy'] for r in rs])} | {stat([r['grpo']['accuracy'] for r in rs])} "
                  f"| {stat([r['grpo']['format_rate'] for r in rs])} | {stat([r['grpo']['reflection'] for r in rs])} "
                  f"| {stat([r['grpo']['mean_length'] for r in rs]).replace('.000', '')} |")
    print(f"\n{len(seeds)} seeds ({a.seeds}); mean ± half the range. Command: python3 scripts/ablation.py --seeds {a.seeds}"
          + (f" --steps-scale {a.steps_scale}" if a.steps_scale != 1.0 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
