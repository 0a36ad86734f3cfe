"""Inference strategies measured (issue 10): accuracy of single greedy vs vote@k, best_of_n@k and
reflect (budget forcing), with tokens spent per question and 95% confidence intervals, on

  arith  the from-scratch arithmetic model's held-out problems (a Ponder checkpoint directory)
  gsm8k  a GSM8K test subset with SmolLM2-135M-Instruct

and the speed of vote@16 (one prefill + one grouped decode) against 16 sequential single calls
and llama.cpp's batched decode of 16 sequences from one prompt (bench_inference.py's worker).

  PONDER_LIBRARY=.build/release/libponder.so python3 bench/bench_infer.py --part arith --model runs/sft-arith-2ep
  PONDER_LIBRARY=.build/release/libponder.so python3 bench/bench_infer.py --part gsm8k --limit 100
  PONDER_LIBRARY=.build/release/libponder.so python3 bench/bench_infer.py --part speed

vote@k and best_of_n@k for k < K are the first k samples of the K-sample group: sample i of a
request with seed s is drawn with seed s + i, so they are exactly what a request with n = k
samples (checked against Ponder's own n = k result on the first questions); the selection rules
are re-applied to the subset here (majority of Ponder's canonical answers, ties by mean logprob;
best_of_n's total with the agreement recomputed over the subset).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))

import ponder  # noqa: E402
from common import machine_info, print_machine  # noqa: E402

SMOL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
WEIGHTS = {"format": 1.0, "reflection": 0.5, "agreement": 2.0, "mean_logprob": 1.0}  # ponder.h's defaults


def log(msg: str) -> None:
    print(f"[bench_infer] {msg}", file=sys.stderr, flush=True)


# ---- questions --------------------------------------------------------------------------------

def held_out(op: str, a: int, b: int) -> bool:
    """The arithmetic task's held-out fifth (Dataset.isHeldOut): FNV-1a of "a op b" % 5 == 0."""
    h = 0xCBF29CE484222325
    for byte in f"{a} {op} {b}".encode():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h % 5 == 0


def arithmetic_questions(limit: int, seed: int = 0) -> list[dict]:
    problems = [("+", a, b) for a in range(1, 51) for b in range(1, 51)]
    problems += [("-", a, b) for a in range(1, 51) for b in range(1, a + 1)]
    problems += [("*", a, c) for a in range(1, 51) for c in range(2, 10)]
    held = [p for p in problems if held_out(*p)]
    random.Random(seed).shuffle(held)
    out = []
    for op, a, b in held[:limit]:
        value = a + b if op == "+" else a - b if op == "-" else a * b
        out.append({"messages": [{"role": "user", "content": f"What is {a} {op} {b}?"}], "reference": f"#### {value}"})
    return out


def gsm8k_questions(limit: int) -> list[dict]:
    with open(os.path.join(ROOT, "data", "gsm8k", "test.jsonl")) as f:
        rows = [json.loads(line) for _, line in zip(range(limit), f)]
    return [{"messages": [{"role": "user", "content": r["question"]}], "reference": r["answer"]} for r in rows]


def correct(answer: str | None, reference: str) -> bool:
    """The accuracy reward's verdict on an answer Ponder extracted (math-verify's equivalence)."""
    if answer is None:
        return False
    r = ponder.score([{"completion": f"<answer>{answer}</answer>", "reference": reference}], rewards=["accuracy"])
    return r[0]["rewards"]["accuracy"] == 1


# ---- selection over a subset of a group's samples (ponder.h's rules) ----------------------------

def vote(cands: list[dict]) -> str | None:
    groups: dict[str, list[dict]] = {}
    for c in cands:
        if c["answer"] is not None:
            groups.setdefault(c["answer"], []).append(c)
    if not groups:
        return None

    def key(item):
        members = item[1]
        return (len(members), sum(m["mean_logprob"] or -math.inf for m in members) / len(members))
    best = None
    for item in groups.items():  # first seen wins a full tie
        if best is None or key(item) > key(best):
            best = item
    return best[0]


def best_of_n(cands: list[dict]) -> str | None:
    k = len(cands)
    best, best_key = None, None
    for c in cands:
        s = dict(c["scores"])
        if k > 1:
            s["agreement"] = (sum(1 for d in cands if c["answer"] is not None and d["answer"] == c["answer"]) - 1) / (k - 1) \
                if c["answer"] is not None else 0.0
        else:
            s["agreement"] = None
        total = sum(WEIGHTS[n] * v for n, v in s.items() if v is not None and n in WEIGHTS)
        key = (total, c["mean_logprob"] if c["mean_logprob"] is not None else -math.inf)
        if best_key is None or key > best_key:
            best, best_key = c, key
    return best["answer"]


# ---- accuracy -----------------------------------------------------------------------------------

def ci95(xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, float("nan")
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    return m, 1.96 * sd / math.sqrt(n)


def summarize(rows: dict, seconds: float, mismatches: list) -> dict:
    greedy = [float(ok) for ok, _ in rows["single greedy"]]
    out = {}
    for name, v in rows.items():
        xs = [float(ok) for ok, _ in v]
        m, h = ci95(xs)
        d, dh = ci95([x - y for x, y in zip(xs, greedy)])
        out[name] = {"accuracy": m, "ci95": h, "vs_greedy": d, "vs_greedy_ci95": dh,
                     "tokens_per_question": sum(t for _, t in v) / len(v), "n": len(v)}
    out["_seconds"] = seconds
    out["_selection_mismatches"] = mismatches
    return out


def accuracy(model: ponder.Model, questions: list[dict], ks: list[int], reflect_ks: list[int], temperature: float,
             max_tokens: int, reflect_options: dict, partial: str, check_first: int = 2) -> dict:
    K = max(ks)
    rows: dict[str, list[tuple[bool, int]]] = {}

    def add(name: str, ok: bool, tokens: int) -> None:
        rows.setdefault(name, []).append((ok, tokens))

    mismatches = []  # re-selected subsets that differ from Ponder's own selection (expected: none)
    t0 = time.time()
    for qi, q in enumerate(questions):
        base = {"messages": q["messages"], "max_tokens": max_tokens}
        g = model.infer(strategy="single", temperature=0, **base)
        add("single greedy", correct(g["answer"], q["reference"]), g["tokens_spent"])
        r = model.infer(strategy="reflect", temperature=0, **base, **reflect_options)
        add("reflect greedy (1 x Wait)", correct(r["answer"], q["reference"]), r["tokens_spent"])
        v = model.infer(strategy="vote", n=K, temperature=temperature, seed=qi, **base)
        cands = v["candidates"]
        for k in ks:
            sub = cands[:k]
            tokens = sum(c["completion_tokens"] for c in sub)
            va, ba = vote(sub), best_of_n(sub)
            if k == K and va != v["answer"]:
                mismatches.append({"question": qi, "strategy": "vote", "k": k, "ponder": v["answer"], "bench": va})
            if qi < check_first and k < K:  # the subset is what n = k samples and selects
                for strategy, mine in (("vote", va), ("best_of_n", ba)):
                    own = model.infer(strategy=strategy, n=k, temperature=temperature, seed=qi, **base)["answer"]
                    if own != mine:
                        mismatches.append({"question": qi, "strategy": strategy, "k": k, "ponder": own, "bench": mine})
            add(f"vote@{k}", correct(va, q["reference"]), tokens)
            add(f"best_of_n@{k}", correct(ba, q["reference"]), tokens)
        if not reflect_ks:
            continue
        rv = model.infer(strategy="reflect", n=max(reflect_ks), temperature=temperature, seed=qi, **base, **reflect_options)
        spent = [c["completion_tokens"] + c["rolled_back_tokens"] for c in rv["candidates"]]
        for k in reflect_ks:
            add(f"reflect+vote@{k}", correct(vote(rv["candidates"][:k]), q["reference"]), sum(spent[:k]))
        # A long run on a shared machine: the summary so far is always on disk.
        with open(partial, "w") as f:
            json.dump(summarize(rows, time.time() - t0, mismatches), f, indent=1)
        if (qi + 1) % 5 == 0 or qi + 1 == len(questions):
            done = {n: sum(ok for ok, _ in v) / len(v) for n, v in rows.items()}
            log(f"{qi + 1}/{len(questions)} questions, {time.time() - t0:.0f} s: "
                + ", ".join(f"{n} {a:.2f}" for n, a in done.items()))
    return summarize(rows, time.time() - t0, mismatches)


def print_table(title: str, res: dict) -> None:
    print(f"\n{title}\n| strategy | accuracy (95% CI) | vs greedy, paired (95% CI) | tokens / question |\n|---|---|---|---|")
    for name, r in res.items():
        if name.startswith("_"):
            continue
        print(f"| {name} | {r['accuracy']:.3f} ± {r['ci95']:.3f} | {r['vs_greedy']:+.3f} ± {r['vs_greedy_ci95']:.3f} "
              f"| {r['tokens_per_question']:.0f} |")
    print(f"({res['_seconds']:.0f} s; subset re-selection mismatches: {len(res['_selection_mismatches'])})")


# ---- speed ----------------------------------------------------------------------------------------

def speed(model: ponder.Model, group: int, max_tokens: int) -> dict:
    from bench_inference import GROUP_TEMPERATURE, PROMPT, ensure_f32_gguf  # one bench prompt for all engines
    req = {"prompt": PROMPT, "max_tokens": max_tokens, "temperature": GROUP_TEMPERATURE, "seed": 1}
    model.infer(strategy="single", **{**req, "max_tokens": 8})  # warm-up
    out = {}
    t = time.perf_counter()
    v = model.infer(strategy="vote", n=group, **req)
    wall = time.perf_counter() - t
    out[f"ponder vote@{group}"] = {"tokens": v["tokens_spent"], "wall_seconds": wall, "tps": v["tokens_spent"] / wall,
                                   "decode_tps": v["timings"]["decode_tokens_per_second"]}
    tokens, t = 0, time.perf_counter()
    for i in range(group):  # seed + i: the same samples the group drew
        tokens += model.infer(strategy="single", **{**req, "seed": 1 + i})["tokens_spent"]
    wall = time.perf_counter() - t
    out[f"ponder {group} sequential single"] = {"tokens": tokens, "wall_seconds": wall, "tps": tokens / wall}
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        out["llama.cpp batched"] = {"skipped": "llama-cpp-python is not installed"}
        return out
    ensure_f32_gguf()
    cmd = [sys.executable, os.path.join(HERE, "bench_inference.py"), "--worker", "llamacpp", "--threads", "2",
           "--max-tokens", str(max_tokens), "--group", str(group), "--repeats", "1", "--no-sequential-group"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    try:
        res = json.loads(p.stdout.strip().splitlines()[-1])
        run = res["runs"]["group"][0]
        out[f"llama.cpp batched {group} (F32 GGUF)"] = {"tokens": run["tokens"], "wall_seconds": run["seconds"],
                                                       "tps": run["tps"], "driver": res.get("driver")}
    except (IndexError, KeyError, json.JSONDecodeError):
        out["llama.cpp batched"] = {"error": (p.stderr or p.stdout)[-800:]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("arith", "gsm8k", "speed"), required=True)
    ap.add_argument("--model", help="arith: the SFT checkpoint directory; gsm8k/speed: default SmolLM2")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--ks", default="4,8,16")
    ap.add_argument("--reflect-ks", default=None, help="k of reflect+vote@k (default: --ks; '' for none)")
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--threads", type=int, default=2, help="accuracy parts only (speed always uses 2)")
    a = ap.parse_args()
    info = machine_info(os.environ.get("PONDER_LIBRARY"), torch_config=False)
    print_machine(info)
    ks = [int(k) for k in a.ks.split(",")]
    reflect_ks = ks if a.reflect_ks is None else [int(k) for k in a.reflect_ks.split(",") if k]
    model = ponder.Model.load(a.model or SMOL, threads=2 if a.part == "speed" else a.threads)
    path = a.out or os.path.join(HERE, "out", f"infer_{a.part}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = path.replace(".json", ".partial.json")
    if a.part == "arith":
        res = accuracy(model, arithmetic_questions(a.limit), ks, reflect_ks, a.temperature or 0.5, a.max_tokens or 150, {}, partial)
        print_table(f"arithmetic held-out, {a.limit} problems ({a.model})", res)
    elif a.part == "gsm8k":
        res = accuracy(model, gsm8k_questions(a.limit), ks, reflect_ks, a.temperature or 0.7, a.max_tokens or 256, {}, partial)
        print_table(f"GSM8K test, first {a.limit} questions, SmolLM2-135M-Instruct", res)
    else:
        res = speed(model, max(ks), a.max_tokens or 128)
        print(json.dumps(res, indent=1))
    res["_machine"] = info
    res["_command"] = " ".join(sys.argv)
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
