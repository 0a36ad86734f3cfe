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
# Static Swift runtime: no libswift*.so dependency.
if ldd "$prefix/lib/libponder.so" | grep -q libswift; then
  echo "FAIL: libponder.so depends on the Swift runtime"; ldd "$prefix/lib/libponder.so"; exit 1
fi

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
echo "install: 3 passed, 0 failed"
