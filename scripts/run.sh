#!/usr/bin/env bash
# The main job until the training pipeline lands: set up, build, and have SmolLM2-135M-Instruct
# answer GSM8K test questions with a group of sampled completions each, through the C ABI.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
scripts/setup.sh
swift build -c release
PONDER_LIBRARY="$PWD/.build/release/libponder.so" python3 examples/python/gsm8k_generate.py "$@"
