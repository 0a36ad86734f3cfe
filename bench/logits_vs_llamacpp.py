#!/usr/bin/env python3
"""Ponder's decode logits against llama.cpp's on the same GGUF file (issue 25's check).

  python3 bench/logits_vs_llamacpp.py [--kinds Q4_1,Q8_0,Q4_K_M] [--steps 64] [--weights native]

For each bench prompt, llama.cpp greedily continues it for --steps tokens; both engines then
score that one token path (Ponder through `ponder-cli logits`: the prompt prefilled, then one
decode step per token, the kernels generation runs). Per position: KL(llama.cpp ‖ Ponder) in nats,
and whether the top-1 tokens agree where llama.cpp's top-2 logit margin exceeds 0.5. Prints one
JSON object per file; exits 1 when mean KL > 0.01 or a confident top-1 differs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import quantized_files  # noqa: E402

CLI = os.path.join(ROOT, ".build", "release", "ponder-cli")
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QUESTIONS = [
    "Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
    "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. "
    "How much in dollars does she make every day at the farmers' market?",
    "What is 17 * 23? Show your work.",
    "Write one sentence about the sea.",
]


def chat(q: str) -> str:
    return f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def compare(path: str, steps: int, weights: str, threads: int = 2) -> dict:
    from llama_cpp import Llama
    llm = Llama(model_path=path, n_ctx=512, n_threads=threads, n_threads_batch=threads, logits_all=True, verbose=False)
    vocab = llm.n_vocab()
    kls, agree, confident, rows = [], 0, 0, 0
    for q in QUESTIONS:
        prompt = llm.tokenize(chat(q).encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(prompt)
        cont = []
        for _ in range(steps):
            t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            if t == llm.token_eos():
                break
            cont.append(t)
            llm.eval([t])
        ref = np.array(llm.scores[len(prompt) - 1: len(prompt) + len(cont)], dtype=np.float32)
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "logits.f32")
            subprocess.run([CLI, "logits", out, "--model", path, "--weights", weights, "--threads", str(threads)],
                           input=json.dumps({"prompt": prompt, "continuation": cont}).encode(), check=True)
            got = np.fromfile(out, dtype=np.float32).reshape(-1, vocab)
        assert got.shape == ref.shape, (got.shape, ref.shape)
        lp, lq = log_softmax(ref), log_softmax(got)
        kls += list((np.exp(lp) * (lp - lq)).sum(axis=-1))
        top2 = np.sort(ref, axis=-1)[:, -2:]
        sure = (top2[:, 1] - top2[:, 0]) > 0.5
        confident += int(sure.sum())
        agree += int((np.argmax(ref, -1) == np.argmax(got, -1))[sure].sum())
        rows += len(ref)
    return {"file": os.path.basename(path), "weights": weights, "positions": rows, "mean_kl": float(np.mean(kls)),
            "max_kl": float(np.max(kls)), "confident_positions": confident, "confident_top1_agree": agree}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kinds", default="Q4_1,Q8_0,Q4_K_M")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--weights", default="native")
    a = ap.parse_args()
    ok = True
    for kind in a.kinds.split(","):
        r = compare(quantized_files.ensure(kind), a.steps, a.weights)
        print(json.dumps(r))
        ok &= r["mean_kl"] <= 0.01 and r["confident_top1_agree"] == r["confident_positions"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
