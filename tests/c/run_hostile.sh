#!/usr/bin/env bash
# Builds libponder.so and tests/c/hostile.c against it, then runs every hostile-caller case on the
# fuzzers' tiny generated model. Exits non-zero if any case fails, crashes or hangs.
#   tests/c/run_hostile.sh [--case NAME]
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/opt/swift/usr/bin:$PATH"
# The fuzzers' tiny model and weight seeds are generated, not committed (deterministic).
[ -f Tests/Fuzz/regressions/safetensors/sampler-nonfinite-logits.safetensors ] || python3 scripts/make_fuzz_seeds.py >/dev/null
scripts/build.sh --product ponder 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
mkdir -p .build/hostile
cc -std=c11 -O1 -g -Wall -Wextra -Werror -Iinclude -o .build/hostile/hostile tests/c/hostile.c \
  -L.build/release -lponder -Wl,-rpath,"$PWD/.build/release" -lpthread
# Swift's crash backtracer would only slow a crashing case down; the harness names it anyway.
export SWIFT_BACKTRACE=enable=no
.build/hostile/hostile "$@" Tests/Fuzz/model Tests/Fuzz/corpus/gguf/llama_f32_f16_bf16.gguf
