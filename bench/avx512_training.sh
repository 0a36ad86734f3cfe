#!/usr/bin/env bash
# Ponder's SFT step (SmolLM2, 4 × 256 packed GSM8K tokens) with OpenBLAS's default kernels and
# with its AVX-512 kernels (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for that run only), and
# checks that both runs compute the same losses. Full and LoRA. Compare with bench_training.py's
# PyTorch figures from the same machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cli=.build/release/ponder-cli
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -200 data/gsm8k/train.jsonl > "$tmp/train.jsonl"
for kind in full lora; do
  lora=$([ $kind = lora ] && echo '"lora": {"r": 16, "alpha": 32},' || true)
  cat > "$tmp/$kind.json" <<EOF2
{"model": {"path": "models/SmolLM2-135M-Instruct.Q4_1.gguf"}, $lora
 "data": {"train": "$tmp/train.jsonl", "max_length": 256, "packing": true},
 "training": {"batch_size": 4, "max_steps": 5, "learning_rate": 1e-5}, "threads": 2}
EOF2
  $cli sft "$tmp/$kind.json" 2>/dev/null > "$tmp/$kind.default"
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $cli sft "$tmp/$kind.json" 2>/dev/null > "$tmp/$kind.avx512"
  python3 - "$kind" "$tmp/$kind.default" "$tmp/$kind.avx512" <<'PY'
import json, sys
kind, a, b = sys.argv[1], [json.loads(l) for l in open(sys.argv[2])], [json.loads(l) for l in open(sys.argv[3])]
for x, y in zip(a, b):
    assert abs(x["loss"] - y["loss"]) < 1e-4 * max(1, abs(x["loss"])), (x["step"], x["loss"], y["loss"])
tps = lambda rows: sum(r["tokens_per_second"] for r in rows[1:]) / (len(rows) - 1)
print(f"{kind}: default {tps(a):.0f} tok/s, AVX-512 OpenBLAS {tps(b):.0f} tok/s; losses agree over {len(a)} steps")
PY
done
