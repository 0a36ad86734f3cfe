#!/usr/bin/env python3
"""Test oracle for Ponder's GRPO: advantages, loss, metrics and d(loss)/d(logps) computed by TRL's
own GRPOTrainer code (not a re-implementation), for cases read as JSON from stdin.

  python3 scripts/trl_grpo_oracle.py [--model DIR] < cases.json > results.json
  python3 scripts/trl_grpo_oracle.py --selftest        # 20 seeded random cases, prints a summary

--selftest also checks the harness: gradients against central differences of TRL's loss, zero gradient
where the mask is 0, zero advantage for equal-reward groups and for rows with no reward, and that
clipping triggered low, high and in cispo. Exit status 1 on a failure.

A real `GRPOTrainer` is built per case (CPU, fp32 model = the tiny Llama of Tests/Fixtures/tiny/llama)
with the case's options; steps_per_generation = gradient_accumulation_steps = micro_batches and
per_device_train_batch_size = B / micro_batches, so B must be a multiple of micro_batches and of
num_generations. Reward functions reward_0..reward_{K-1} (or the case's optional "reward_names")
return the case's columns of rewards_per_func, null as None.

Advantages: TRL's real `_generate_and_score_completions` runs on B inputs (prompt i // num_generations
for row i, i.e. TRL's RepeatSampler order), with only `_generate` replaced, to return fixed prompt
and completion ids (every completion T tokens, so no truncation logic is involved), and
`_get_per_token_logps_and_entropies` replaced by zeros (it is only called for the reference
log-probs when beta != 0, which do not enter the advantages). `is_std_zero` is a local of that
function that TRL only logs (as frac_reward_zero_std); it is read from the function's frame when it
returns (sys.setprofile), so it is TRL's value, expanded per sequence. TRL computes the rewards in
float32 (it casts each function's output to float32), so advantages carry float32 rounding.
reward_metrics = everything TRL put in `_metrics["train"]` during that call (reward, reward_std,
frac_reward_zero_std, rewards/<name>/mean, rewards/<name>/std).

Loss and gradient: independent of the advantages above, from the case's given "advantages". For
each micro-batch (contiguous rows, in order; the real trainer shuffles the generation batch before
splitting it, which only changes which rows share a micro-batch) `trainer._compute_loss` is called
with `_get_per_token_logps_and_entropies` replaced to return that micro-batch's rows of a float64
leaf tensor of the case's logps (requires_grad), the case's entropies (or zeros) and None. Inputs:
completion_mask = mask (int64, as TRL builds it), advantages (float64), old_per_token_logps (absent
when null, so TRL uses the detached current ones), ref_per_token_logps (when beta != 0),
num_items_in_batch = mask sum over the whole batch (int64 tensor), one-token prompts.
`current_gradient_accumulation_steps` = micro_batches, model in train mode. All loss arithmetic is
float64 (TRL's code is dtype-generic), so it carries only float64 rounding. Each micro-batch's loss is
backpropagated; "grad" is the gradient of the sum of the micro-batch losses (what TRL's training
step accumulates: GRPOTrainer sets loss_is_scaled_for_ga, so Trainer does not rescale it). TRL's
gradient is returned as is; it is exactly 0 where the mask is 0 provided the masked logps are finite.
metrics = what TRL appended to `_metrics["train"]` in that call (kl, entropy, clip_ratio/*,
cispo_clip_ratio); TRL computes the clip ratios in float32 (it casts the flags with .float()).

Output: {"trl_version", "cases": [{"name", "advantages" [B], "is_std_zero" [B], "reward_metrics",
"micro_batches": [{"loss", "metrics"}], "grad" [B][T]}]}; NaN / infinities are written as null.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import math
import os
import random
import sys
import tempfile
import time
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def finite_or_none(x):
    x = float(x)
    return x if math.isfinite(x) else None


def reward_function(name, column):
    def reward(prompts, completions, **kwargs):
        assert len(completions) == len(column)
        return list(column)
    reward.__name__ = name
    return reward


def build_trainer(case, model_dir, tmp):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rows = len(case["mask"])
    groups, micro = case["num_generations"], case["micro_batches"]
    if rows % micro or rows % groups:
        raise ValueError(f"{case['name']}: B={rows} must be a multiple of micro_batches and num_generations")
    k = len(case["reward_weights"])
    names = case.get("reward_names") or [f"reward_{i}" for i in range(k)]
    columns = [[row[i] for row in case["rewards_per_func"]] for i in range(k)]
    args = GRPOConfig(
        output_dir=tmp, use_cpu=True, report_to="none", bf16=False, fp16=False, save_strategy="no",
        loss_type=case["loss_type"], importance_sampling_level=case["importance_sampling_level"],
        beta=case["beta"], epsilon=case["epsilon"], epsilon_high=case["epsilon_high"],
        scale_rewards=case["scale_rewards"], multi_objective_aggregation=case["multi_objective_aggregation"],
        reward_weights=list(case["reward_weights"]), num_generations=case["num_generations"],
        max_completion_length=case["max_completion_length"], gradient_accumulation_steps=micro,
        use_bias_correction_kl=case.get("use_bias_correction_kl", True),
        per_device_train_batch_size=rows // micro, steps_per_generation=micro,
    )
    dataset = Dataset.from_dict({"prompt": [f"prompt {i}" for i in range(rows // groups)]})
    trainer = GRPOTrainer(model=model_dir, args=args, train_dataset=dataset,
                          reward_funcs=[reward_function(n, c) for n, c in zip(names, columns)])
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = micro
    return trainer


def scalar_metrics(metrics):
    out = {}
    for key, values in metrics.items():
        if values:
            out[key] = finite_or_none(values[-1])
    return out


def run_advantages(trainer, case):
    import torch

    rows, width = len(case["mask"]), len(case["mask"][0])
    groups = case["num_generations"]
    inputs = [{"prompt": f"prompt {i // groups}"} for i in range(rows)]
    completion_ids = [[3 + (i + t) % 200 for t in range(width)] for i in range(rows)]
    completions = trainer.processing_class.batch_decode(completion_ids, skip_special_tokens=True)

    def fixed_generate(prompts):
        # (prompt_ids, completion_ids, tool_mask, completions, sampling logps, extra_fields, images, tool_images)
        return [[1, 5 + i % 7] for i in range(len(prompts))], completion_ids, None, completions, None, {}, None, []

    def zero_logps(model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        return torch.zeros(input_ids.size(0), logits_to_keep), None, None

    trainer._generate = fixed_generate
    trainer._get_per_token_logps_and_entropies = zero_logps
    trainer._metrics["train"].clear()

    code = inspect.unwrap(type(trainer)._generate_and_score_completions).__code__
    captured = {}

    def on_event(frame, event, arg):
        if event == "return" and frame.f_code is code:
            captured.update(frame.f_locals)

    sys.setprofile(on_event)
    try:
        output = trainer._generate_and_score_completions(inputs)
    finally:
        sys.setprofile(None)
    is_std_zero = captured["is_std_zero"]
    return {
        "advantages": [finite_or_none(a) for a in output["advantages"].tolist()],
        "is_std_zero": [bool(z) for z in is_std_zero.expand(rows).tolist()],
        "reward_metrics": scalar_metrics(trainer._metrics["train"]),
    }


def run_loss(trainer, case):
    import torch

    f64 = torch.float64
    rows, width = len(case["mask"]), len(case["mask"][0])
    micro = case["micro_batches"]
    size = rows // micro
    mask = torch.tensor(case["mask"], dtype=torch.long)
    logps = torch.tensor(case["logps"], dtype=f64, requires_grad=True)
    entropies = torch.tensor(case["entropies"], dtype=f64) if case.get("entropies") else torch.zeros(rows, width, dtype=f64)
    old = torch.tensor(case["old_logps"], dtype=f64) if case.get("old_logps") is not None else None
    ref = torch.tensor(case["ref_logps"], dtype=f64) if case.get("ref_logps") is not None else None
    if case["beta"] != 0 and ref is None:
        raise ValueError(f"{case['name']}: beta != 0 needs ref_logps")
    advantages = torch.tensor(case["advantages"], dtype=f64)
    num_items = mask.sum()

    results = []
    for m in range(micro):
        rows_m = slice(m * size, (m + 1) * size)
        trainer._get_per_token_logps_and_entropies = (
            lambda *args, _r=rows_m, **kwargs: (logps[_r], entropies[_r], None))
        inputs = {
            "prompt_ids": torch.ones(size, 1, dtype=torch.long),
            "prompt_mask": torch.ones(size, 1, dtype=torch.long),
            "completion_ids": torch.full((size, width), 3, dtype=torch.long),
            "completion_mask": mask[rows_m],
            "advantages": advantages[rows_m],
            "num_items_in_batch": num_items,
        }
        if old is not None:
            inputs["old_per_token_logps"] = old[rows_m]
        if case["beta"] != 0:
            inputs["ref_per_token_logps"] = ref[rows_m]
        trainer._metrics["train"].clear()
        loss = trainer._compute_loss(trainer.model, inputs)
        loss.backward()
        results.append({"loss": finite_or_none(loss.item()), "metrics": scalar_metrics(trainer._metrics["train"])})
    grad = logps.grad if logps.grad is not None else torch.zeros_like(logps)
    return {"micro_batches": results, "grad": [[finite_or_none(g) for g in row] for row in grad.tolist()]}


def run_cases(cases, model_dir):
    results = []
    for case in cases:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = build_trainer(case, model_dir, tmp)
            result = {"name": case["name"]}
            result.update(run_advantages(trainer, case))
            result.update(run_loss(trainer, case))
            results.append(result)
    return results


def quiet():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def random_cases(seed=1234):
    """Every loss_type x importance level x beta in {0, 0.04}: ragged masks with a fully masked row, a
    group of equal rewards, nulls and an all-null row, ratios far enough from 1 to clip both ways."""
    rng = random.Random(seed)
    shapes = [(8, 4, 2), (12, 4, 3), (12, 3, 2), (9, 3, 3), (10, 2, 2), (14, 2, 2), (12, 6, 2), (8, 2, 2)]
    cases = []
    index = 0
    for loss_type in ["grpo", "bnpo", "dapo", "dr_grpo", "cispo"]:
        for level in ["token", "sequence"]:
            for beta in [0.0, 0.04]:
                rows, groups, micro = shapes[index % len(shapes)]
                width = rng.randint(3, 9)
                k = 1 + index % 3
                lengths = [rng.randint(1, width) for _ in range(rows)]
                lengths[rng.randrange(rows)] = 0
                lengths[rng.randrange(rows)] = width
                mask = [[1 if t < n else 0 for t in range(width)] for n in lengths]
                rewards = [[rng.choice([0.0, 1.0, 0.5, -1.0, round(rng.uniform(-2, 2), 3)]) for _ in range(k)]
                           for _ in range(rows)]
                equal = rng.randrange(rows // groups)
                for i in range(equal * groups, (equal + 1) * groups):
                    rewards[i] = list(rewards[equal * groups])
                for _ in range(2):
                    i = rng.randrange(rows)
                    if i // groups != equal:
                        rewards[i][rng.randrange(k)] = None
                blank = rng.randrange(rows)
                if blank // groups != equal:
                    rewards[blank] = [None] * k
                logps = [[rng.uniform(-3.0, -0.05) for _ in range(width)] for _ in range(rows)]
                spread = 0.6 if level == "token" else 0.9
                # Sequence-level ratios average the noise over a row, so one shift per row keeps them far from 1.
                shift = [rng.gauss(0, spread) for _ in range(rows)]
                old = [[lp + (shift[i] if level == "sequence" else rng.gauss(0, spread)) for lp in row]
                       for i, row in enumerate(logps)]
                ref = [[lp + rng.gauss(0, 0.3) for lp in row] for row in logps]
                advantages = [rng.gauss(0, 1) for _ in range(rows)]
                advantages[rng.randrange(rows)] = 0.0
                cases.append({
                    "name": f"{loss_type}-{level}-beta{beta}",
                    "loss_type": loss_type, "importance_sampling_level": level, "beta": beta,
                    "epsilon": 0.2, "epsilon_high": 1.5 if loss_type == "cispo" else [0.2, 0.28][index % 2],
                    "max_completion_length": width + index % 3, "micro_batches": micro,
                    "num_generations": groups, "scale_rewards": ["group", "batch", "none"][index % 3],
                    "multi_objective_aggregation": ["sum_then_normalize", "normalize_then_sum"][(index // 3) % 2],
                    "reward_weights": [[1.0, 0.5, 2.0, -0.3][(index + i) % 4] for i in range(k)],
                    "rewards_per_func": rewards, "advantages": advantages, "logps": logps,
                    "old_logps": None if index % 5 == 4 else old,
                    "ref_logps": ref if beta != 0 else None,
                    "entropies": [[rng.uniform(0, 2) for _ in range(width)] for _ in range(rows)] if index % 2 else None,
                    "mask": mask,
                })
                index += 1
    return cases


def finite_difference_error(case, result, model_dir, step=1e-6):
    """Largest |autograd - central difference| of the summed micro-batch losses over all logps, both
    through TRL's _compute_loss: checks that the harness wires the gradient through (only meaningful
    with fixed old_logps and outside cispo, whose clamped ratio is detached)."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(case, model_dir, tmp)
        worst = 0.0
        for b, row in enumerate(case["mask"]):
            for t in range(len(row)):
                total = []
                for sign in (1, -1):
                    logps = [list(r) for r in case["logps"]]
                    logps[b][t] += sign * step
                    total.append(sum(mb["loss"] for mb in run_loss(trainer, {**case, "logps": logps})["micro_batches"]))
                worst = max(worst, abs((total[0] - total[1]) / (2 * step) - result["grad"][b][t]))
    return worst


def selftest(model_dir):
    cases = random_cases()
    start = time.perf_counter()
    results = run_cases(cases, model_dir)
    seconds = time.perf_counter() - start
    failures = []
    for case, result in zip(cases, results):
        if case["loss_type"] != "cispo" and case["old_logps"] is not None and case["name"].endswith("0.04"):
            error = finite_difference_error(case, result, model_dir)
            print(f"{case['name']}: max |autograd - finite difference| = {error:.2e}")
            if error > 1e-6:
                failures.append(f"{case['name']}: gradient differs from finite differences by {error:.2e}")
    clipped = {"low": 0, "high": 0, "cispo": 0}
    print(f"{'case':30} {'B':>3} {'T':>2} {'mb':>2} {'losses':40} {'|grad|':>8} {'zero-std':>8}")
    for case, result in zip(cases, results):
        losses = [mb["loss"] for mb in result["micro_batches"]]
        grad = result["grad"]
        values = [g for row in grad for g in row]
        if any(g is None for g in values) or any(x is None for x in losses):
            failures.append(f"{case['name']}: non-finite loss or gradient")
            continue
        if any(g != 0.0 for row, mrow in zip(grad, case["mask"]) for g, m in zip(row, mrow) if m == 0):
            failures.append(f"{case['name']}: gradient where the mask is 0")
        groups = case["num_generations"]
        for i, rewards in enumerate(case["rewards_per_func"]):
            if all(r is None for r in rewards) and result["advantages"][i] != 0.0:
                failures.append(f"{case['name']}: row {i} has no reward but a nonzero advantage")
        for g in range(len(case["mask"]) // groups):
            members = case["rewards_per_func"][g * groups:(g + 1) * groups]
            if all(r == members[0] for r in members) and case["scale_rewards"] != "batch" \
                    and case["multi_objective_aggregation"] == "sum_then_normalize":
                if not result["is_std_zero"][g * groups]:
                    failures.append(f"{case['name']}: group {g} has equal rewards but is_std_zero is false")
                if any(a != 0.0 for a in result["advantages"][g * groups:(g + 1) * groups]):
                    failures.append(f"{case['name']}: group {g} has equal rewards but nonzero advantages")
        for mb in result["micro_batches"]:
            m = mb["metrics"]
            clipped["low"] += (m.get("clip_ratio/low_mean") or 0) > 0
            clipped["high"] += (m.get("clip_ratio/high_mean") or 0) > 0
            clipped["cispo"] += (m.get("cispo_clip_ratio") or 0) > 0
        norm = math.sqrt(sum(g * g for g in values))
        print(f"{case['name']:30} {len(case['mask']):3} {len(case['mask'][0]):2} {case['micro_batches']:2} "
              f"{' '.join(f'{x:+.5f}' for x in losses):40} {norm:8.4f} {sum(result['is_std_zero']):8}")
    if not (clipped["low"] and clipped["high"] and clipped["cispo"]):
        failures.append(f"clipping never triggered on some side: {clipped}")
    print(f"{len(cases)} cases in {seconds:.1f} s; micro-batches with clipping: {clipped}")
    for failure in failures:
        print("FAIL", failure)
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=os.path.join(REPO, "Tests", "Fixtures", "tiny", "llama"))
    parser.add_argument("--selftest", action="store_true")
    args = parser.parse_args()
    quiet()
    if args.selftest:
        sys.exit(selftest(args.model))
    cases = json.load(sys.stdin)["cases"]
    # Libraries print progress to stdout; only the JSON result may go there.
    with contextlib.redirect_stdout(sys.stderr):
        import trl
        results = run_cases(cases, args.model)
    json.dump({"trl_version": trl.__version__, "cases": results}, sys.stdout, allow_nan=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
