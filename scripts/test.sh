#!/usr/bin/env bash
# The whole test suite, as CI runs it: the test setup (oracles included), the one release build
# of the library and CLI (scripts/build.sh: what the Python, C, wheel and install tests use),
# the Swift tests (their own build: @testable imports, in release since the model tests are far
# too slow in debug), the Python binding and CLI tests with the HF oracles, the install test
# (CMake find_package + pkg-config consumers), the hostile C caller and the fuzz smoke runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
export PONDER_REQUIRE_MODEL=1
scripts/setup_tests.sh
# In CI every oracle is required: a missing one fails its tests instead of skipping them.
if [ "${CI:-}" = true ] || python3 -c "import torch, transformers, peft" 2>/dev/null; then
  export PONDER_REQUIRE_ORACLES=1
else
  echo "note: torch/transformers/peft unavailable: the tests that need them or their outputs will skip"
fi
scripts/build.sh
swift test -c release --scratch-path .build-tests -Xswiftc -enable-testing 2>&1 | grep -vE '^Test Case .* (started|passed)'
PONDER_LIBRARY="$PWD/.build/release/libponder.so" python3 -m pytest -q tests/python
bash tests/integration/test_install.sh
# Reliability (docs/RELIABILITY.md): a hostile C caller against every function of ponder.h, then
# every committed crash input replayed and each fuzz target run briefly from its seeds.
tests/c/run_hostile.sh
scripts/fuzz.sh smoke
