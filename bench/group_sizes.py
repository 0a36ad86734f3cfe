#!/usr/bin/env python3
"""Ponder's grouped-decode throughput by group size (G samples of one prompt, 64 new tokens,
T = 0.8), on the bench's F32 GGUF and prompt; best of 2 runs per size. Groups past 16 rows use
the few-rows kernel up to 64 rows (PonderKernels.fewRowsLimit), sgemm beyond.

    python3 bench/group_sizes.py [--sizes 1,8,16,24,32,48,64,96] [--threads 2]
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
os.environ.setdefault("PONDER_LIBRARY", os.path.join(ROOT, ".build", "release", "libponder.so"))

import bench_inference as b  # noqa: E402  (F32 GGUF path and prompt)
import ponder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,8,16,24,32,48,64,96")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if not os.path.exists(b.F32_GGUF):
        sys.exit(f"{b.F32_GGUF} is missing: run bench/bench_inference.py once (it writes it)")
    model = ponder.Model.load(b.F32_GGUF, threads=a.threads)
    print("| group size | decode tokens/s |\n|---:|---:|")
    for n in (int(s) for s in a.sizes.split(",")):
        best = max(model.generate(prompt=b.PROMPT, max_tokens=64, temperature=0.8, n=n, seed=1)
                   ["timings"]["decode_tokens_per_second"] for _ in range(2))
        print(f"| {n} | {best:.0f} |", flush=True)


if __name__ == "__main__":
    main()
