#!/usr/bin/env bash
# The one build of libponder.so and the `ponder` CLI, for the main job, the Python and C tests,
# the wheel and CMake alike (each passes its own --scratch-path, or takes .build): release, the
# Swift standard library linked statically, so the library needs no Swift toolchain at run time
# (NEEDED: libc, libm, libstdc++, libgcc_s, libopenblas, libjson-c), with its SONAME set.
# `swift test` is the one other build (tests import modules @testable; XCTest links the Swift
# runtime dynamically, so its test bundle cannot use these flags).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
exec swift build -c release -Xswiftc -static-stdlib -Xlinker -soname=libponder.so "$@"
