#!/usr/bin/env python3
"""One GRPO step: Ponder vs TRL's GRPOTrainer (CPU), one run, one machine.

  python3 bench/bench_grpo.py [--tokens 128] [--generations 8] [--rounds 2] [--threads 2]
                              [--engines ponder,trl] [--max-load 1.5] [--wait-idle 600]

Model: SmolLM2-135M-Instruct, both engines loading the same Hugging Face directory (fp32
safetensors written once from models/SmolLM2-135M-Instruct.Q4_1.gguf by `ponder-cli convert`),
so they train the same weights. One step = 1 prompt x G completions of exactly --tokens new
tokens (temperature 1), a reward that varies within the group, advantages, reference log-probs
(beta 0.04), loss "grpo", backward, AdamW (lr 1e-6, clip 1.0); full-parameter, no gradient
checkpointing, no group skipping.

Each engine runs in its own child process (its peak RSS is its own, no thread pools leaking between
engines): load, one warm-up step, one timed step. The engines run --rounds times, interleaved, and
each keeps its fastest timed step. The split:
  rollout    generation (Ponder: its rollout_seconds; TRL: GRPOTrainer._generate)
  reference  the reference model's log-probs (Ponder: reference_seconds; TRL: the call of
             _get_per_token_logps_and_entropies on ref_model)
  update     everything else in the step: rewards and advantages, the loss forward + backward,
             clipping, the optimizer (step total - rollout - reference); each engine's own
             forward+backward time is shown beside it (Ponder: update_seconds; TRL:
             training_step minus its _prepare_inputs, i.e. compute_loss + backward)
The step total is Ponder's Trainer.step() wall time and, for TRL, on_step_begin -> on_step_end of a
TrainerCallback inside trainer.train() (generation, scoring, loss, backward, optimizer).

The run fails when an engine's completions are not --tokens long on average (within 2 tokens):
both are held there by a minimum length (TRL: generation_kwargs min_new_tokens; Ponder:
min_completion_length), and the prompt asks for a long story anyway.

Prints the machine (CPU, AVX-512, BLAS of each engine), a markdown table with ratios, and writes
bench/out/grpo.json. See bench/README.md.
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

from common import (busy_cpu_seconds, machine_info, print_machine, proc_status_kib, reset_peak_rss,
                    self_cpu_seconds, wait_idle)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GGUF = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT_DIR = os.path.join(HERE, "out")
PONDER_LIB_DEFAULT = os.path.join(ROOT, ".build", "release", "libponder.so")
PONDER_CLI = os.path.join(ROOT, ".build", "release", "ponder-cli")
HF_DIR_DEFAULT = os.path.join(tempfile.gettempdir(), "ponder-bench-smollm2-hf")

# Asks for far more than 128 tokens, so the minimum length rarely has to hold a completion back.
PROMPT = ("Write a long, detailed story of at least 600 words about a lighthouse keeper who finds an old "
          "map hidden in the wall of the lighthouse. Describe the sea, the weather and every step of the "
          "journey in detail.")
BETA = 0.04
LR = 1e-6
GIB = 1024 ** 3
LENGTH_TOLERANCE = 2.0  # tokens: mean completion length must be within this of --tokens
LOADED = 0.10  # "under load": other processes used > 10 % of the machine's CPU during the timed step

# TRL 1.16 on an AVX-512 machine of this kind (given with the issue), and the targets.
REFERENCE_TRL = {"step": 24.9, "rollout": 10.0, "reference": 2.6, "loss_forward_backward": 11.7}
TARGETS = {"speedup": 2.5, "speedup_avx512": 3.5, "rss_ratio": 0.7}


def bench_reward(completion: str) -> float:
    """Distinct words / words: deterministic, cheap, and different for every sampled completion,
    so every group has a nonzero std and both engines run the whole backward."""
    words = completion.split()
    return len(set(words)) / len(words) if words else 0.0


# --------------------------------------------------------------------------------------------
# Children
# --------------------------------------------------------------------------------------------

class StepMeter:
    """Wall time of one step and the CPU other processes used meanwhile (fraction of the machine)."""

    def __enter__(self):
        self.b0, self.o0, self.t0 = busy_cpu_seconds(), self_cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0
        b1, o1 = busy_cpu_seconds(), self_cpu_seconds()
        self.other_cpu = None
        if self.b0 is not None and b1 is not None and self.seconds > 0:
            other = max(0.0, (b1 - self.b0) - (o1 - self.o0))
            self.other_cpu = round(other / (self.seconds * (os.cpu_count() or 1)), 3)
        return False


def child_ponder(a) -> dict:
    import ponder  # PONDER_LIBRARY is in the environment

    jsonl = os.path.join(a.workdir, "prompts.jsonl")
    with open(jsonl, "w") as f:
        # A reference is required by the prompt JSONL; the bench reward ignores it.
        f.write(json.dumps({"prompt": PROMPT, "reference": "-"}) + "\n")
    config = {
        "kind": "grpo",
        "model": {"path": a.hf_dir},
        "data": {"train": jsonl},
        "reward": {"custom": ["bench"], "rewards": ["bench"], "reward_weights": [1.0]},
        "training": {"prompts_per_step": 1, "num_generations": a.generations, "max_completion_length": a.tokens,
                     "min_completion_length": a.tokens,
                     "beta": BETA, "loss_type": "grpo", "learning_rate": LR, "max_steps": a.steps,
                     "seed": a.seed, "temperature": 1.0, "skip_zero_std_groups": False,
                     "gradient_checkpointing": False},
        "threads": a.threads,
    }
    out = {"config": config, "library": os.environ.get("PONDER_LIBRARY")}
    t0 = time.perf_counter()
    trainer = ponder.Trainer(config)
    trainer.set_reward("bench", lambda prompt, completion, reference: bench_reward(completion))
    out["load_seconds"] = time.perf_counter() - t0
    out["rss_after_load_kib"] = proc_status_kib("VmRSS")
    out["hwm_reset"] = reset_peak_rss()
    steps = []
    for i in range(a.steps):
        with StepMeter() as m:
            metrics = trainer.step()
        rollout, reference = metrics.get("rollout_seconds"), metrics.get("reference_seconds")
        steps.append({
            "total": m.seconds, "rollout": rollout, "reference": reference,
            "update": m.seconds - rollout - reference,
            "loss_forward_backward": metrics.get("update_seconds"),
            "mean_length": metrics.get("completions/mean_length"),
            "min_length": metrics.get("completions/min_length"),
            "max_length": metrics.get("completions/max_length"),
            "reward_std": metrics.get("reward_std"), "other_cpu": m.other_cpu, "metrics": metrics,
        })
        print(f"[ponder] step {i + 1}: {m.seconds:.2f}s (rollout {rollout:.2f}, reference {reference:.2f}), "
              f"mean length {steps[-1]['mean_length']}", file=sys.stderr, flush=True)
    trainer.close()
    out["steps"] = steps
    return out


def child_trl(a) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    import transformers
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    out = {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
           "torch_threads": torch.get_num_threads()}

    def bench(completions, **kwargs):
        return [bench_reward(c[-1]["content"] if isinstance(c, list) else c) for c in completions]

    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": PROMPT}]}] * (a.steps * 2))
    args = GRPOConfig(
        output_dir=os.path.join(a.workdir, "trl"), use_cpu=True, bf16=False, fp16=False,
        per_device_train_batch_size=a.generations, num_generations=a.generations,
        gradient_accumulation_steps=1, max_completion_length=a.tokens, temperature=1.0,
        # Exactly --tokens new tokens: end-of-sequence is suppressed until then.
        generation_kwargs={"min_new_tokens": a.tokens},
        beta=BETA, loss_type="grpo", learning_rate=LR, max_steps=a.steps, seed=a.seed,
        gradient_checkpointing=False, logging_steps=1, report_to=[], save_strategy="no",
        model_init_kwargs={"dtype": torch.float32}, dataloader_num_workers=0,
    )
    t0 = time.perf_counter()
    trainer = GRPOTrainer(model=a.hf_dir, reward_funcs=bench, args=args, train_dataset=dataset)
    out["load_seconds"] = time.perf_counter() - t0

    steps: list[dict] = []
    cur: dict = {}

    def timed(name, key, only=None):
        original = getattr(trainer, name)

        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                if only is None or only(args, kwargs):
                    cur[key] = cur.get(key, 0.0) + time.perf_counter() - t

        setattr(trainer, name, wrapper)

    timed("_generate", "rollout")
    timed("_get_per_token_logps_and_entropies", "reference",
          only=lambda args, kwargs: (args[0] if args else kwargs.get("model")) is trainer.ref_model)
    timed("_generate_and_score_completions", "generate_and_score")
    timed("_prepare_inputs", "prepare_inputs")
    timed("training_step", "training_step")

    class Steps(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            cur.clear()
            cur["meter"] = StepMeter().__enter__()

        def on_step_end(self, args, state, control, **kw):
            m = cur.pop("meter")
            m.__exit__(None, None, None)
            rec = dict(cur)
            rec["total"] = m.seconds
            rec["other_cpu"] = m.other_cpu
            rec["update"] = m.seconds - rec.get("rollout", 0.0) - rec.get("reference", 0.0)
            rec["loss_forward_backward"] = rec.get("training_step", 0.0) - rec.get("prepare_inputs", 0.0)
            steps.append(rec)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and steps and "completions/mean_length" in logs:
                rec = steps[-1]
                for k in ("mean_length", "min_length", "max_length"):
                    rec[k] = logs.get("completions/" + k)
                rec["reward_std"] = logs.get("reward_std")
                rec["metrics"] = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
                print(f"[trl] step {len(steps)}: {rec['total']:.2f}s (rollout {rec.get('rollout', 0):.2f}, "
                      f"reference {rec.get('reference', 0):.2f}), mean length {rec['mean_length']}",
                      file=sys.stderr, flush=True)

    trainer.add_callback(Steps())
    out["rss_after_load_kib"] = proc_status_kib("VmRSS")
    out["hwm_reset"] = reset_peak_rss()
    trainer.train()
    out["steps"] = steps
    return out


def run_child(a) -> None:
    try:
        res = child_ponder(a) if a.child == "ponder" else child_trl(a)
    except BaseException as e:  # report precisely; the parent keeps going
        import traceback

        res = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    res["train_peak_rss_kib"] = proc_status_kib("VmHWM")  # since the reset after load, if hwm_reset
    res["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # whole process
    print("RESULT " + json.dumps(res), flush=True)


# --------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------

def ensure_hf_dir(path: str) -> None:
    if os.path.exists(os.path.join(path, "model.safetensors")):
        return
    if not os.path.exists(GGUF):
        sys.exit(f"missing {GGUF} (scripts/fetch_model.sh)")
    print(f"[bench] converting {os.path.relpath(GGUF, ROOT)} -> {path} (fp32 safetensors)", file=sys.stderr, flush=True)
    subprocess.run([PONDER_CLI, "convert", GGUF, path, "--to", "safetensors"], check=True)


def run_engine(engine: str, a, env: dict, workdir: str) -> dict:
    if engine == "baseline":
        # Another build of libponder.so (an earlier commit), timed in the same run.
        engine, env = "ponder", dict(env, PONDER_LIBRARY=a.baseline)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", engine, "--workdir", workdir,
           "--hf-dir", a.hf_dir, "--tokens", str(a.tokens), "--generations", str(a.generations),
           "--threads", str(a.threads), "--seed", str(a.seed), "--steps", str(a.steps)]
    t0 = time.time()
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=None, text=True, timeout=a.timeout)
        lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
        res = json.loads(lines[-1][len("RESULT "):]) if lines else {"error": f"child exited {p.returncode} without a result"}
        if p.returncode != 0 and "error" not in res:
            res["error"] = f"child exited {p.returncode}"
    except subprocess.TimeoutExpired:
        res = {"error": f"timed out after {a.timeout}s"}
    res["wall_seconds"] = time.time() - t0
    return res


def best_step(runs: list[dict]) -> tuple[dict | None, list[dict]]:
    """The fastest timed (non-warm-up) step over the rounds, and every timed step."""
    timed = [r["steps"][-1] | {"round": i + 1, "peak_rss_kib": r["peak_rss_kib"]}
             for i, r in enumerate(runs) if "error" not in r and len(r.get("steps", [])) >= 2]
    return (min(timed, key=lambda s: s["total"]) if timed else None), timed


def fmt(x, spec=".2f"):
    return "–" if x is None else format(x, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per completion")
    ap.add_argument("--generations", type=int, default=8, help="G, completions of the one prompt")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds over the engines (fastest step kept)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engines", default="ponder,trl")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-load", type=float, default=1.5, help="wait for a 1-min load average below this")
    ap.add_argument("--wait-idle", type=float, default=600.0, help="at most this many seconds (0: don't wait)")
    ap.add_argument("--timeout", type=float, default=900.0, help="per engine and round, seconds")
    ap.add_argument("--hf-dir", default=HF_DIR_DEFAULT, help="the HF model directory both engines load")
    ap.add_argument("--baseline", metavar="LIB", help="also time Ponder with this libponder.so (e.g. an earlier "
                    "commit's build), interleaved, and print Ponder / baseline")
    ap.add_argument("--out", default=os.path.join(OUT_DIR, "grpo.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=2, help=argparse.SUPPRESS)  # warm-up + timed
    a = ap.parse_args()
    if a.child:
        run_child(a)
        return 0

    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    for e in engines:
        if e not in ("ponder", "trl"):
            ap.error(f"unknown engine {e!r}")
    env = dict(os.environ)
    env.setdefault("PONDER_LIBRARY", PONDER_LIB_DEFAULT)
    env["PYTHONPATH"] = os.path.join(ROOT, "bindings", "python") + os.pathsep + env.get("PYTHONPATH", "")
    for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[v] = str(a.threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")

    machine = machine_info(env["PONDER_LIBRARY"])
    print_machine(machine)
    ensure_hf_dir(a.hf_dir)
    idle = wait_idle(a.wait_idle, threshold=a.max_load) if a.wait_idle > 0 else {"idle": None, "load1": os.getloadavg()[0]}
    if idle.get("idle") is False:
        print(f"[bench] WARNING: 1-min load still {idle['load1']:.2f} after {idle['waited_s']}s; measuring anyway",
              file=sys.stderr, flush=True)

    timed_engines = engines + (["baseline"] if a.baseline else [])
    runs: dict[str, list[dict]] = {e: [] for e in timed_engines}
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="ponder-bench-grpo-") as workdir:
        for r in range(a.rounds):
            for e in timed_engines:
                load1 = os.getloadavg()[0]
                print(f"[bench] round {r + 1}/{a.rounds}: {e} (1-min load {load1:.2f}) ...", file=sys.stderr, flush=True)
                res = run_engine(e, a, env, workdir)
                res["load1_before"] = load1
                runs[e].append(res)
                if "error" in res:
                    print(f"[bench] {e}: ERROR {res['error']}\n{res.get('traceback', '')}", file=sys.stderr, flush=True)

    best = {e: best_step(runs[e])[0] for e in engines}
    peak = {e: max((x["peak_rss_kib"] for x in runs[e] if "peak_rss_kib" in x), default=None) for e in engines}
    train_peak = {e: max((x["train_peak_rss_kib"] for x in runs[e] if x.get("hwm_reset") and x.get("train_peak_rss_kib")),
                         default=None) for e in engines}

    # ---- table -------------------------------------------------------------------------------
    labels = {"ponder": "Ponder", "trl": f"TRL {next((x.get('trl') for x in runs.get('trl', []) if x.get('trl')), '')} GRPOTrainer".strip()}
    rows = [("step total, s", "total"), ("rollout (generation), s", "rollout"), ("reference log-probs, s", "reference"),
            ("update (total − rollout − reference), s", "update"), ("  of which loss forward + backward, s", "loss_forward_backward")]
    head = "| | " + " | ".join(labels[e] for e in engines) + (" | TRL / Ponder |" if len(engines) == 2 else " |")
    lines = [head, "|---" * (len(engines) + 1 + (len(engines) == 2)) + "|"]
    both = len(engines) == 2 and all(best[e] for e in engines)
    for label, key in rows:
        vals = [best[e].get(key) if best[e] else None for e in engines]
        ratio = ""
        if both and vals[0] and vals[1]:
            ratio = f"{vals[1] / vals[0]:.2f}×"
        lines.append(f"| {label} | " + " | ".join(fmt(v) for v in vals) + (f" | {ratio} |" if len(engines) == 2 else " |"))
    rss = [peak[e] * 1024 / GIB if peak[e] else None for e in engines]
    trss = [train_peak[e] * 1024 / GIB if train_peak[e] else None for e in engines]
    rss_ratio = rss[0] / rss[1] if both and rss[0] and rss[1] else None
    lines.append("| peak RSS (whole process), GiB | " + " | ".join(fmt(v) for v in rss)
                 + (f" | Ponder / TRL {fmt(rss_ratio)} |" if len(engines) == 2 else " |"))
    lines.append("| peak RSS after load (train phase), GiB | " + " | ".join(fmt(v) for v in trss) + (" | |" if len(engines) == 2 else " |"))
    lens = [best[e] and f"{fmt(best[e].get('mean_length'), '.1f')} ({fmt(best[e].get('min_length'), '.0f')}–{fmt(best[e].get('max_length'), '.0f')})"
            for e in engines]
    lines.append("| completion length, mean (min–max) | " + " | ".join(x or "–" for x in lens) + (" | |" if len(engines) == 2 else " |"))
    table = "\n".join(lines)

    notes = []
    failures = []
    for e in engines:
        for i, x in enumerate(runs[e]):
            if "error" in x:
                failures.append(f"{labels[e]} round {i + 1}: {x['error']}")
                continue
            for j, s in enumerate(x.get("steps", [])):
                ml = s.get("mean_length")
                if ml is None or abs(ml - a.tokens) > LENGTH_TOLERANCE:
                    failures.append(f"{labels[e]} round {i + 1} step {j + 1}: mean completion length {ml}, not {a.tokens}")
        if best[e] and best[e].get("other_cpu") is not None and best[e]["other_cpu"] > LOADED:
            notes.append(f"{labels[e]}: other processes used {best[e]['other_cpu'] * 100:.0f}% of the CPUs during its best step")
    speedup = best["trl"]["total"] / best["ponder"]["total"] if both else None
    avx512 = machine["avx512f"]
    corename = (machine.get("ponder_openblas") or {}).get("corename", "?")
    if speedup is not None:
        avx512_kernels = corename.lower() in ("skylakex", "cooperlake", "sapphirerapids")
        target = TARGETS["speedup_avx512"] if avx512_kernels else TARGETS["speedup"]
        notes.append(f"Speed-up (TRL step / Ponder step): {speedup:.2f}× (target ≥ {TARGETS['speedup']}× in the default "
                     f"environment, ≥ {TARGETS['speedup_avx512']}× with OpenBLAS's AVX-512 kernels; this run: "
                     f"OpenBLAS kernels {corename}, {'AVX-512F' if avx512 else 'no AVX-512F on this CPU'}) — "
                     f"{'met' if speedup >= target else 'not met'} against ≥ {target}×.")
    if rss_ratio is not None:
        notes.append(f"Peak RSS Ponder / TRL: {rss_ratio:.2f} (target ≤ {TARGETS['rss_ratio']}) — "
                     f"{'met' if rss_ratio <= TARGETS['rss_ratio'] else 'not met'}.")
    if "trl" in engines and best["trl"]:
        r = REFERENCE_TRL
        notes.append(f"TRL reported for an AVX-512 machine of this kind: {r['step']} s a step (generation {r['rollout']}, "
                     f"reference {r['reference']}, loss forward+backward {r['loss_forward_backward']}); this run "
                     f"{best['trl']['total']:.1f} s.")
    notes.append(f"1 prompt × G = {a.generations}, {a.tokens} new tokens each, β = {BETA}, loss grpo, lr {LR}, "
                 f"full-parameter, {a.threads} threads; load + 1 warm-up step + 1 timed step per process, "
                 f"best of {a.rounds} interleaved rounds; 1-min load at start {idle['load1']:.2f}.")
    title = (f"GRPO step, SmolLM2-135M-Instruct (fp32 HF weights from the Q4_1 GGUF), {machine['cpu']}, "
             f"{machine['cpu_count']} CPUs, {'AVX-512F' if avx512 else 'AVX2, no AVX-512F'}")
    print()
    print(title)
    print()
    print(table)
    print()
    for n in notes + [f"FAILED: {f}" for f in failures]:
        print(f"- {n}")

    if a.baseline:
        base = best_step(runs["baseline"])[0]
        print(f"\n| vs baseline ({a.baseline}) | Ponder | baseline | Ponder / baseline |\n|---|---|---|---|")
        for label, key in rows[:4]:
            v, b = (best["ponder"] or {}).get(key), (base or {}).get(key)
            print(f"| {label} | {fmt(v)} | {fmt(b)} | {fmt(v / b) if v and b else '–'} |")
        bpeak = max((x["peak_rss_kib"] for x in runs["baseline"] if "peak_rss_kib" in x), default=None)
        print(f"| peak RSS, GiB | {fmt(rss[0])} | {fmt(bpeak * 1024 / GIB if bpeak else None)} | |")

    args_out = a.out
    os.makedirs(os.path.dirname(os.path.abspath(args_out)), exist_ok=True)
    doc = {"benchmark": "grpo", "hf_dir": a.hf_dir, "prompt": PROMPT, "tokens": a.tokens, "generations": a.generations,
           "beta": BETA, "learning_rate": LR, "threads": a.threads, "rounds": a.rounds, "seed": a.seed,
           "machine": machine, "idle_wait": idle, "wall_seconds": time.time() - t_start,
           "reference_trl": REFERENCE_TRL, "targets": TARGETS, "runs": runs, "best": best,
           "peak_rss_kib": peak, "train_peak_rss_kib": train_peak, "speedup": speedup, "rss_ratio": rss_ratio,
           "table": title + "\n\n" + table, "notes": notes, "failures": failures}
    with open(args_out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"\nwrote {os.path.relpath(args_out, ROOT)}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
