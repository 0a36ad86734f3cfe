#!/usr/bin/env bash
# Installs what Ponder needs on a fresh Debian machine with Swift, Python and apt:
# system libraries (OpenBLAS, json-c), build tools, the Python test/oracle packages, the model.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"

need=()
for p in libopenblas-dev libjson-c-dev pkg-config cmake ninja-build; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check pytest tokenizers gguf numpy 2>&1 | grep -v "as the 'root' user" || true
python3 -m pip install -q --disable-pip-version-check -e bindings/python 2>&1 | grep -v "as the 'root' user" || true
scripts/fetch_model.sh >/dev/null
