"""Answers GSM8K test questions with a Ponder model: greedy, then a group of sampled
completions per question decoded together. Usage: gsm8k_generate.py [--model PATH] [--questions N]"""
import argparse
import json
import os

import ponder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--questions", type=int, default=3)
    ap.add_argument("--group", type=int, default=4)
    args = ap.parse_args()
    model = ponder.Model.load(args.model, threads=2)
    with open(os.path.join(ROOT, "data", "gsm8k", "test.jsonl")) as f:
        rows = [json.loads(line) for _, line in zip(range(args.questions), f)]
    for i, row in enumerate(rows):
        msgs = [{"role": "user", "content": row["question"]}]
        print(f"\n=== Q{i}: {row['question']}\n--- greedy:")
        r = model.generate(messages=msgs, max_tokens=200, temperature=0,
                           on_token=lambda s, t, text: print(text, end="", flush=True))
        t = r["timings"]
        print(f"\n[{r['prompt_tokens']} prompt tokens, prefill {t['prefill_tokens_per_second']:.0f} tok/s, "
              f"decode {t['decode_tokens_per_second']:.1f} tok/s]")
        g = model.generate(messages=msgs, max_tokens=200, temperature=0.8, top_p=0.95, n=args.group, seed=i)
        # Ponder's accuracy reward: final answer vs GSM8K's "#### N", math-verify semantics.
        scores = ponder.score([{"completion": c["text"], "reference": row["answer"]} for c in g["completions"]],
                              rewards=["accuracy"])
        verdicts = [s["reasons"]["accuracy"] for s in scores]
        print(f"--- group of {args.group}: {verdicts}; "
              f"{sum(s['rewards']['accuracy'] == 1 for s in scores)}/{args.group} correct; "
              f"group decode {g['timings']['decode_tokens_per_second']:.1f} tok/s")


if __name__ == "__main__":
    main()
