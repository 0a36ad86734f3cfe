#!/usr/bin/env python3
"""SFT training-step throughput and peak RSS: Ponder vs PyTorch eager (+ PEFT), one run, one machine.

  python3 bench/bench_training.py [--steps 5] [--threads 2] [--configs all] [--wait-idle 600]

Model: SmolLM2-135M-Instruct (models/SmolLM2-135M-Instruct.Q4_1.gguf; both engines dequantize it to
fp32 at load). Batch 4 x 256 tokens, AdamW, lr 1e-5, --threads threads.

Configurations (each in its own child process, so its peak RSS is its own):
  ponder_full / ponder_full_gc    Ponder full-parameter SFT, gradient checkpointing off / on
  ponder_lora / ponder_lora_gc    Ponder LoRA r=16 alpha=32 on all 7 projections, checkpointing off / on
  torch_full                      transformers LlamaForCausalLM (same GGUF), full fine-tuning
  torch_lora                      the same + PEFT LoRA (same r / alpha / targets)
Ponder is driven through the Python binding (`import ponder`, library from PONDER_LIBRARY) on a temp
JSONL of GSM8K train examples with packing (every row exactly 256 tokens); PyTorch gets a fixed batch
of 4 x 256 GSM8K tokens (Ponder's own tokenizer/packing is not reproduced; the content of the ids
does not change the cost of a step). The first step is a warm-up; throughput is
(steps 2..N tokens) / (steps 2..N wall time).

Prints a markdown table with ratios and writes bench/out/training.json. See bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

from common import busy_cpu_seconds, proc_status_kib, reset_peak_rss, self_cpu_seconds, wait_idle

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = os.path.join(ROOT, "models")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF = os.path.join(MODELS, GGUF_NAME)
GSM8K = os.path.join(ROOT, "data", "gsm8k", "train.jsonl")
OUT_DIR = os.path.join(HERE, "out")
PONDER_LIB_DEFAULT = os.path.join(ROOT, ".build", "release", "libponder.so")

BATCH, SEQ = 4, 256
LR = 1e-5
LORA_R, LORA_ALPHA = 16, 32
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GIB = 1024 ** 3
LOADED = 0.10  # "under load": other processes used > 10 % of the machine's CPU during the timed steps

CONFIGS = {
    "torch_full": {"engine": "torch", "lora": False, "gc": False,
                   "label": "PyTorch eager, full"},
    "torch_lora": {"engine": "torch", "lora": True, "gc": False,
                   "label": "PyTorch + PEFT LoRA"},
    "ponder_full": {"engine": "ponder", "lora": False, "gc": False,
                    "label": "Ponder full"},
    "ponder_full_gc": {"engine": "ponder", "lora": False, "gc": True,
                       "label": "Ponder full, grad ckpt"},
    "ponder_lora": {"engine": "ponder", "lora": True, "gc": False,
                    "label": "Ponder LoRA"},
    "ponder_lora_gc": {"engine": "ponder", "lora": True, "gc": True,
                       "label": "Ponder LoRA, grad ckpt"},
}
ORDER = ["ponder_full", "ponder_full_gc", "ponder_lora", "ponder_lora_gc", "torch_full", "torch_lora"]

# Measured elsewhere on this machine kind (PyTorch 2.15 from PyPI), given with the task; and targets.
REFERENCE = {
    "torch_full": {"tokens_per_second": 170.0, "peak_rss": "4.9 GB"},
    "torch_lora": {"tokens_per_second": 216.0, "peak_rss": "4.4 GB"},
}
TARGETS = {  # Ponder mode -> (min throughput ratio vs the PyTorch row of the same mode, max peak RSS GiB)
    "full": {"min_ratio": 1.1, "max_rss_gib": 3.5, "baseline": "torch_full"},
    "lora": {"min_ratio": 1.3, "max_rss_gib": 1.5, "baseline": "torch_lora"},
}


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

def write_gsm8k_jsonl(path: str, count: int) -> int:
    n = 0
    with open(GSM8K) as src, open(path, "w") as dst:
        for line in src:
            line = line.strip()
            if not line:
                continue
            row = json.loads(line)
            dst.write(json.dumps({"question": row["question"], "answer": row["answer"]}) + "\n")
            n += 1
            if n >= count:
                break
    return n


# --------------------------------------------------------------------------------------------
# Children
# --------------------------------------------------------------------------------------------

def timed_steps(step_fn, steps: int) -> tuple[list[dict], float, float]:
    """Runs step_fn `steps` times; returns per-step records plus (other-CPU s, own CPU s) over steps 2..N."""
    records = []
    busy0 = own0 = None
    for i in range(steps):
        if i == 1:
            busy0, own0 = busy_cpu_seconds(), self_cpu_seconds()
        t0 = time.perf_counter()
        info = step_fn()
        dt = time.perf_counter() - t0
        info["seconds"] = dt
        info["rss_kib"] = proc_status_kib("VmRSS")
        records.append(info)
        print(f"[child] step {i + 1}/{steps}: {dt:.2f}s {json.dumps({k: v for k, v in info.items() if k in ('loss', 'grad_norm')})}",
              file=sys.stderr, flush=True)
    busy1, own1 = busy_cpu_seconds(), self_cpu_seconds()
    if busy0 is None or busy1 is None or own0 is None:
        return records, float("nan"), float("nan")
    own = own1 - own0
    return records, max(0.0, (busy1 - busy0) - own), own


def child_ponder(cfg: dict, args) -> dict:
    import ponder  # noqa: E402  (PONDER_LIBRARY is in the environment)

    config = {
        "model": {"path": GGUF},
        "data": {"train": args.jsonl, "max_length": SEQ, "packing": True},
        "training": {"batch_size": BATCH, "max_steps": args.steps, "learning_rate": LR,
                     "gradient_checkpointing": cfg["gc"]},
        "threads": args.threads,
    }
    if cfg["lora"]:
        config["lora"] = {"r": LORA_R, "alpha": LORA_ALPHA, "target_modules": LORA_TARGETS}
    out = {"config": config, "library": os.environ.get("PONDER_LIBRARY")}
    t0 = time.perf_counter()
    trainer = ponder.Trainer(config)
    out["load_seconds"] = time.perf_counter() - t0
    out["rss_after_load_kib"] = proc_status_kib("VmRSS")
    out["hwm_after_load_kib"] = proc_status_kib("VmHWM")
    out["hwm_reset"] = reset_peak_rss()

    def step():
        m = trainer.step()
        return {"metrics": m, "loss": m.get("loss"), "grad_norm": m.get("grad_norm")}

    out["steps"], out["other_cpu_seconds"], out["own_cpu_seconds"] = timed_steps(step, args.steps)
    trainer.close()
    return out


def gsm8k_token_batch() -> list[list[int]]:
    """4 x 256 ids of GSM8K text (question + answer, EOS-separated), with SmolLM2's tokenizer from the GGUF."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MODELS, gguf_file=GGUF_NAME)
    ids: list[int] = []
    eos = tok.eos_token_id if tok.eos_token_id is not None else 0
    with open(GSM8K) as f:
        for line in f:
            row = json.loads(line)
            ids += tok(row["question"] + "\n" + row["answer"], add_special_tokens=False)["input_ids"] + [eos]
            if len(ids) >= BATCH * SEQ:
                break
    ids = ids[: BATCH * SEQ]
    return [ids[i * SEQ:(i + 1) * SEQ] for i in range(BATCH)]


def child_torch(cfg: dict, args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM
    import transformers

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = {"torch": torch.__version__, "transformers": transformers.__version__,
           "torch_threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(MODELS, gguf_file=GGUF_NAME, dtype=torch.float32)
    if cfg["lora"]:
        import peft
        from peft import LoraConfig, get_peft_model

        out["peft"] = peft.__version__
        model = get_peft_model(model, LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0,
                                                 target_modules=LORA_TARGETS, task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    out["trainable_parameters"] = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=LR)
    try:
        batch = gsm8k_token_batch()
        out["batch"] = "gsm8k"
    except Exception as e:  # tokenizer import failed: random valid ids cost the same
        vocab = model.config.vocab_size
        batch = torch.randint(0, vocab, (BATCH, SEQ), generator=torch.Generator().manual_seed(0)).tolist()
        out["batch"] = f"random ids ({type(e).__name__}: {e})"
    ids = torch.tensor(batch, dtype=torch.long)
    out["load_seconds"] = time.perf_counter() - t0
    out["rss_after_load_kib"] = proc_status_kib("VmRSS")
    out["hwm_after_load_kib"] = proc_status_kib("VmHWM")
    out["hwm_reset"] = reset_peak_rss()

    def step():
        res = model(input_ids=ids, labels=ids, use_cache=False)
        res.loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 1.0)  # Ponder's default max_grad_norm
        opt.step()
        opt.zero_grad(set_to_none=True)
        return {"loss": float(res.loss.detach()), "grad_norm": float(gn)}

    out["steps"], out["other_cpu_seconds"], out["own_cpu_seconds"] = timed_steps(step, args.steps)
    return out


def run_child(args) -> None:
    cfg = CONFIGS[args.child]
    try:
        res = child_ponder(cfg, args) if cfg["engine"] == "ponder" else child_torch(cfg, args)
    except BaseException as e:  # report precisely, the parent keeps going
        import traceback

        res = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(),
               "hwm_kib": proc_status_kib("VmHWM")}
    res["peak_rss_kib"] = proc_status_kib("VmHWM")  # since the reset (training phase) if hwm_reset
    res["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # whole process
    print("RESULT " + json.dumps(res), flush=True)


# --------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------

def summarize(res: dict, steps: int) -> dict:
    if "error" in res or not res.get("steps"):
        return {}
    timed = res["steps"][1:] if len(res["steps"]) > 1 else res["steps"]
    secs = sum(s["seconds"] for s in timed)
    toks = BATCH * SEQ * len(timed)
    s = {
        "tokens_per_second": toks / secs if secs > 0 else float("nan"),
        "timed_steps": len(timed),
        "step_seconds": [round(x["seconds"], 3) for x in res["steps"]],
        "peak_rss_gib": res["ru_maxrss_kib"] * 1024 / GIB,
        "train_peak_rss_gib": (res["peak_rss_kib"] * 1024 / GIB) if res.get("hwm_reset") and res.get("peak_rss_kib") else None,
        "load_peak_rss_gib": (res["hwm_after_load_kib"] * 1024 / GIB) if res.get("hwm_after_load_kib") else None,
        "losses": [x.get("loss") for x in res["steps"]],
        "other_cpu_fraction": None,
    }
    if secs > 0 and res.get("other_cpu_seconds") == res.get("other_cpu_seconds"):  # not NaN
        s["other_cpu_fraction"] = res["other_cpu_seconds"] / (secs * (os.cpu_count() or 1))
        s["own_cpu_utilization"] = res["own_cpu_seconds"] / secs
    reported = [x["metrics"].get("tokens_per_second") for x in timed if "metrics" in x]
    reported = [r for r in reported if isinstance(r, (int, float))]
    if reported:
        s["ponder_reported_tokens_per_second_mean"] = sum(reported) / len(reported)
    ntoks = [x["metrics"].get("num_tokens") for x in res["steps"] if "metrics" in x]
    if ntoks:
        s["ponder_num_tokens_per_step"] = ntoks  # Ponder's per-step count; should be BATCH * SEQ
    return s


def fmt(x, spec=".0f", dash="–"):
    return dash if x is None or x != x else format(x, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5, help="steps per configuration; the first is warm-up")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", default="all", help="comma list of " + ",".join(ORDER))
    ap.add_argument("--examples", type=int, default=500, help="GSM8K examples in the Ponder JSONL")
    ap.add_argument("--wait-idle", type=float, default=600.0,
                    help="first wait up to this many seconds for a 1-min load average < 0.6 (0: don't)")
    ap.add_argument("--timeout", type=float, default=240.0, help="per-configuration timeout, seconds")
    ap.add_argument("--out", default=os.path.join(OUT_DIR, "training.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--jsonl", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args)
        return 0

    names = ORDER if args.configs == "all" else [c.strip() for c in args.configs.split(",") if c.strip()]
    for n in names:
        if n not in CONFIGS:
            ap.error(f"unknown configuration {n!r}")
    env = dict(os.environ)
    env.setdefault("PONDER_LIBRARY", PONDER_LIB_DEFAULT)
    for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[v] = str(args.threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")

    idle = wait_idle(args.wait_idle) if args.wait_idle > 0 else {"idle": None, "load1": os.getloadavg()[0]}
    if idle.get("idle") is False:
        print(f"[bench] WARNING: machine still loaded after {idle['waited_s']}s (1-min load {idle['load1']:.2f});"
              " measuring anyway", file=sys.stderr, flush=True)

    tmp = tempfile.NamedTemporaryFile("w", suffix=".jsonl", prefix="ponder-bench-gsm8k-", delete=False)
    tmp.close()
    n_examples = write_gsm8k_jsonl(tmp.name, args.examples)
    results: dict[str, dict] = {}
    t_start = time.time()
    try:
        for name in names:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--jsonl", tmp.name,
                   "--steps", str(args.steps), "--threads", str(args.threads)]
            t0 = time.time()
            load_before = os.getloadavg()[0]
            try:
                p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
                lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
                if lines:
                    res = json.loads(lines[-1][len("RESULT "):])
                else:
                    res = {"error": f"child exited {p.returncode} without a result",
                           "stderr_tail": p.stderr[-4000:]}
                if p.returncode != 0 and "error" not in res:
                    res["error"] = f"child exited {p.returncode}"
                if "error" in res:
                    res.setdefault("stderr_tail", p.stderr[-4000:])
            except subprocess.TimeoutExpired as e:
                err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
                res = {"error": f"timed out after {args.timeout}s", "stderr_tail": err[-4000:]}
            res["wall_seconds"] = time.time() - t0
            res["load1_before"] = load_before
            res["summary"] = summarize(res, args.steps)
            results[name] = res
            if "error" in res:
                print(f"[bench] {name}: ERROR {res['error']}", file=sys.stderr, flush=True)
            else:
                sm = res["summary"]
                print(f"[bench] {name}: {sm['tokens_per_second']:.1f} tok/s, peak RSS {sm['peak_rss_gib']:.2f} GiB"
                      f" ({res['wall_seconds']:.0f}s)", file=sys.stderr, flush=True)
    finally:
        os.unlink(tmp.name)

    # ---- table -------------------------------------------------------------------------------
    def tps(n):
        return results.get(n, {}).get("summary", {}).get("tokens_per_second")

    rows = []
    notes = []
    header = ("| configuration | tokens/s | vs PyTorch (this run) | vs PyTorch reference | peak RSS GiB "
              "| train-phase peak GiB | target | met |")
    rows.append(header)
    rows.append("|---|---:|---:|---:|---:|---:|---|---|")
    for name in names:
        cfg = CONFIGS[name]
        res = results[name]
        sm = res.get("summary", {})
        mode = "lora" if cfg["lora"] else "full"
        base = TARGETS[mode]["baseline"]
        if "error" in res:
            rows.append(f"| {cfg['label']} | error | | | {fmt((res.get('ru_maxrss_kib') or 0) * 1024 / GIB, '.2f')} | | | |")
            notes.append(f"{name}: {res['error']}")
            continue
        t = sm["tokens_per_second"]
        if cfg["engine"] == "torch":
            ref = REFERENCE[name]
            ratio, ref_ratio, target, met = "1.00×", f"{t / ref['tokens_per_second']:.2f}× of {ref['tokens_per_second']:.0f}", \
                f"reference: {ref['tokens_per_second']:.0f} tok/s, {ref['peak_rss']}", ""
        else:
            b = tps(base)
            r = t / b if b else None
            rr = t / REFERENCE[base]["tokens_per_second"]
            tg = TARGETS[mode]
            ratio = f"{r:.2f}×" if r else "–"
            ref_ratio = f"{rr:.2f}×"
            target = f"≥ {tg['min_ratio']}×, ≤ {tg['max_rss_gib']} GiB"
            ok_speed = r is not None and r >= tg["min_ratio"]
            ok_rss = sm["peak_rss_gib"] <= tg["max_rss_gib"]
            met = f"speed {'yes' if ok_speed else 'no'}, RSS {'yes' if ok_rss else 'no'}"
            sm["target_met"] = {"speed": ok_speed, "rss": ok_rss, "ratio": r, "ratio_vs_reference": rr}
        rows.append(f"| {cfg['label']} | {t:.0f} | {ratio} | {ref_ratio} | {sm['peak_rss_gib']:.2f} | "
                    f"{fmt(sm['train_peak_rss_gib'], '.2f')} | {target} | {met} |")
        of = sm.get("other_cpu_fraction")
        if of is not None and of > LOADED:
            notes.append(f"{name}: other processes used {of * 100:.0f}% of the CPUs during its timed steps (under load)")
        ptps = sm.get("ponder_reported_tokens_per_second_mean")
        if ptps is not None:
            nt = sm.get("ponder_num_tokens_per_step") or []
            nt_note = "" if nt and all(x == BATCH * SEQ for x in nt) else f"; num_tokens per step {nt} (expected {BATCH * SEQ})"
            notes.append(f"{name}: Ponder's own tokens_per_second (mean of timed steps) {ptps:.0f}{nt_note}")
    table = "\n".join(rows)
    head = (f"SmolLM2-135M-Instruct (Q4_1 GGUF -> fp32), SFT, batch {BATCH}×{SEQ} tokens, {args.threads} threads, "
            f"AdamW lr {LR}; {args.steps} steps per configuration, first is warm-up; peak RSS = whole child process "
            f"(ru_maxrss), train-phase = VmHWM reset after load.")
    print()
    print(head)
    print()
    print(table)
    if idle.get("idle") is False:
        notes.insert(0, f"machine was not idle at start (1-min load {idle['load1']:.2f} after waiting {idle['waited_s']}s)")
    if notes:
        print()
        for n in notes:
            print(f"- {n}")

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    doc = {
        "benchmark": "training",
        "model": GGUF,
        "batch_size": BATCH, "seq_len": SEQ, "threads": args.threads, "steps": args.steps,
        "learning_rate": LR, "lora": {"r": LORA_R, "alpha": LORA_ALPHA, "targets": LORA_TARGETS},
        "gsm8k_examples": n_examples,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count(),
                    "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")},
        "idle_wait": idle,
        "wall_seconds": time.time() - t_start,
        "reference": REFERENCE, "targets": TARGETS,
        "results": results,
        "table": head + "\n\n" + table, "notes": notes,
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"\nwrote {os.path.relpath(args.out, ROOT)}", file=sys.stderr)
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
