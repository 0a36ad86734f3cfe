#!/usr/bin/env bash
# The main job until the GRPO pipeline lands: set up, build, then
#  1. stage 1 from scratch: SFT a small Llama on generated arithmetic (a few minutes on 2 cores;
#     resumes from its last checkpoint if interrupted), and answer held-out problems with it;
#  2. SmolLM2-135M-Instruct answering GSM8K test questions (greedy and a sampled group).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
scripts/setup.sh
swift build -c release
cli=.build/release/ponder-cli
$cli sft examples/configs/sft_arithmetic.json | tail -n 3
ckpt=$(ls -d runs/sft-arithmetic/checkpoint-* | sort -t- -k3 -n | tail -n 1)
for q in "What is 23 + 19?" "What is 41 - 17?" "What is 12 * 7?"; do
  printf '%s -> ' "$q"
  $cli generate --model "$ckpt" --prompt "$q" --chat --temperature 0 --max-tokens 120 2>/dev/null
done
PONDER_LIBRARY="$PWD/.build/release/libponder.so" python3 examples/python/gsm8k_generate.py "$@"
