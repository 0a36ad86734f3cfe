#!/usr/bin/env bash
# Installs Ponder with CMake into a temporary prefix, then builds the C example against the
# *installed* library twice: as an outside CMake project (find_package) and with the Makefile
# (pkg-config), and runs both on the real model.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake -S . -B "$work/build" -G Ninja -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build"
cmake --install "$work/build" >/dev/null
test -f "$prefix/include/ponder.h" && test -f "$prefix/lib/libponder.so" && test -x "$prefix/bin/ponder"
# Static Swift runtime: no libswift*.so, Foundation or dispatch dependency, no toolchain RUNPATH.
dyn=$(readelf -d "$prefix/lib/libponder.so")
if echo "$dyn" | grep NEEDED | grep -qiE "swift|foundation|dispatch"; then
  echo "FAIL: libponder.so depends on the Swift runtime"; echo "$dyn" | grep NEEDED; exit 1
fi
if echo "$dyn" | grep -E "RUNPATH|RPATH" | grep -q "/opt/swift"; then
  echo "FAIL: libponder.so's RUNPATH names the toolchain"; echo "$dyn" | grep -E "RUNPATH|RPATH"; exit 1
fi
test -f "$prefix/share/ponder/ponder.supp"
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --variable=suppressions ponder | grep -q "share/ponder/ponder.supp"
# The build tree's pkg-config file, before any install.
PKG_CONFIG_PATH="$work/build" pkg-config --cflags ponder | grep -q -- "-I$root/include"

cmake -S examples/c -B "$work/example-cmake" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/example-cmake" >/dev/null
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" make -s -C examples/c -f Makefile generate >/dev/null
mv examples/c/generate "$work/generate-make"

model=$root/models/SmolLM2-135M-Instruct.Q4_1.gguf
for exe in "$work/example-cmake/generate" "$work/generate-make"; do
  out=$("$exe" "$model" "What is 2 + 3?" 16)
  echo "$out" | grep -q "finish_reason=" || { echo "FAIL: $exe printed: $out"; exit 1; }
  # Bad input is reported, not crashed on.
  if "$exe" /nonexistent.gguf hi 2>"$work/err"; then echo "FAIL: loading a missing file succeeded"; exit 1; fi
  grep -q "I/O error" "$work/err" || { echo "FAIL: unexpected error text: $(cat "$work/err")"; exit 1; }
done
"$prefix/bin/ponder" tokenize --model "$model" --text "12 apples" --json | grep -q '"ids"'
# A user's program under valgrind, with only what the README says: no error, no leak reported
# (the AVX2 path is taken by itself under valgrind on AVX-512 CPUs: valgrind's cpuid has none).
[ -f Tests/Fuzz/model/model.safetensors ] || python3 scripts/make_fuzz_seeds.py >/dev/null
valgrind -q --leak-check=full --error-exitcode=1 \
  --suppressions="$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --variable=suppressions ponder)" \
  "$work/generate-make" Tests/Fuzz/model "12+7=" 4 >"$work/vg.out" 2>"$work/vg.err" \
  || { echo "FAIL: valgrind reported errors or leaks"; cat "$work/vg.err" | head -60; exit 1; }
echo "install: 5 passed, 0 failed"
