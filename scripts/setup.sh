#!/usr/bin/env bash
# What the main job needs on a fresh Debian machine with Swift, Python and apt, and nothing
# else: the system libraries the library links (OpenBLAS, json-c), pkg-config for the build, and
# the model (scripts/fetch_model.sh). The test oracles are scripts/setup_tests.sh's, which passes
# its own Debian packages as arguments: scripts/setup.sh [PACKAGE...].
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for p in libopenblas-dev libjson-c-dev pkg-config "$@"; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
scripts/fetch_model.sh >/dev/null
