#!/usr/bin/env bash
# The main job: set up, build, then the quickstart pipeline (examples/configs/quickstart.json): a
# small Llama built from scratch, pretrained on generated arithmetic text, SFT on worked
# solutions with self-checks (half the differences stated at once: a shortcut the model cannot
# take reliably, which GRPO corrects), GRPO with the accuracy, format and reflection rewards, and an
# evaluation of every model it produced. Prints the evaluation table; the report is
# runs/quickstart/report.html. Interrupted (Ctrl-C, a kill), it continues from its last
# checkpoint when run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
scripts/setup.sh
scripts/build.sh
cli=.build/release/ponder-cli
if [ -f runs/quickstart/state.json ]; then
  $cli resume runs/quickstart
else
  $cli run examples/configs/quickstart.json
fi
