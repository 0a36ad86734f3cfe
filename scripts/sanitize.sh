#!/usr/bin/env bash
# Memory-safety runs outside the test command (docs/RELIABILITY.md):
#
#   scripts/sanitize.sh [asan|valgrind|all] [swift test flags, e.g. --filter TinyModelTests]
#
# asan      The Swift tests built with AddressSanitizer (LeakSanitizer included) in their own
#           scratch path, .build-asan. Release configuration: the model tests are far too slow in
#           debug, and ASan costs another 2-10x. Fails on any sanitizer report or failing test.
#           Without flags it skips the two learning tests (SmolLoRATests: 12 min under ASan;
#           GRPOLearningTests: SFT then GRPO, far longer), which run the same kernels and
#           trainers as the short tests; `scripts/sanitize.sh asan --filter .` runs everything.
# valgrind  examples/c/generate.c (streaming and grouped generation) and tests/c/hostile.c's
#           single-process cases against the release libponder.so under memcheck: no error, no
#           definitely lost block. Installs Debian's valgrind if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
export SWIFT_BACKTRACE=enable=no
what=${1:-all}
[ $# -eq 0 ] || shift
[ $# -gt 0 ] || set -- --skip SmolLoRATests --skip GRPOLearningTests

run_asan() {
  # LeakSanitizer reports what XCTest itself keeps to the end (the test-case objects and what
  # their teardown blocks hold); a suppression by library would also hide leaks made inside a
  # test, whose stacks run through XCTest too. So leaks do not fail the run by exit code: a leak
  # fails it when a frame of its allocation stack lies in Ponder's sources.
  export ASAN_OPTIONS="detect_leaks=1:handle_sigill=1:halt_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
  export LSAN_OPTIONS="exitcode=0:malloc_context_size=64${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
  local log=.build-asan/test.log
  mkdir -p .build-asan
  echo "asan: building and running the Swift tests (release, -sanitize=address) in .build-asan"
  local rc=0 start=$SECONDS
  swift test -c release --scratch-path .build-asan -Xswiftc -enable-testing -Xswiftc -sanitize=address "$@" \
    >"$log" 2>&1 || rc=$?
  grep -E "Executed [0-9]+ tests|error:|ERROR: AddressSanitizer|SUMMARY:" "$log" | tail -4
  echo "asan: $((SECONDS - start)) s"
  if grep -q "ERROR: AddressSanitizer" "$log"; then
    echo "asan: sanitizer report (full log: $log)" >&2
    return 1
  fi
  [ "$rc" = 0 ] || { echo "asan: swift test failed with $rc (log: $log)" >&2; return 1; }
  local blocks ours
  blocks=$(grep -cE "^(Direct|Indirect) leak of" "$log" || true)
  ours=$(awk '/^(Direct|Indirect) leak of/ {if (b ~ /\/Sources\//) print b; b = $0; next} /^    #/ {b = b "\n" $0}
              END {if (b ~ /\/Sources\//) print b}' "$log" | swift demangle --simplified)
  if [ -n "$ours" ]; then
    echo "$ours" | head -60
    echo "asan: leaks allocated by Ponder's code (full log: $log)" >&2
    return 1
  fi
  echo "asan: ok: no error; $blocks leak report(s), none allocated by Ponder's code (log: $log)"
}

run_valgrind() {
  if ! command -v valgrind >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq valgrind >/dev/null
  fi
  scripts/build.sh --product ponder 2>&1 | grep -vE "^\[[0-9]+/[0-9]+\]" || true
  mkdir -p .build/valgrind
  cc -O1 -g -Iinclude $(pkg-config --cflags json-c) -o .build/valgrind/generate examples/c/generate.c \
    -L.build/release -lponder -Wl,-rpath,"$PWD/.build/release" $(pkg-config --libs json-c)
  cc -std=c11 -O1 -g -Wall -Wextra -Iinclude -o .build/valgrind/hostile tests/c/hostile.c \
    -L.build/release -lponder -Wl,-rpath,"$PWD/.build/release" -lpthread
  # Valgrind does not emulate AVX-512: its cpuid says so, and the library then takes its AVX2
  # kernels by itself (the same code at another width). No switch is needed.
  local vg=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
            --show-leak-kinds=definite)
  [ -f Tests/Fuzz/regressions/safetensors/sampler-nonfinite-logits.safetensors ] || python3 scripts/make_fuzz_seeds.py >/dev/null
  local failed=0 model=Tests/Fuzz/model
  local runs=(
    ".build/valgrind/generate $model 12+7= 6 1"
    ".build/valgrind/generate $model 12+7= 4 3"
    ".build/valgrind/generate Tests/Fuzz/corpus/gguf/qwen2_q8_q4.gguf 12+7= 4 2"
    ".build/valgrind/generate Tests/Fuzz/corpus/gguf/llama_q4k_q6k.gguf 12+7= 4 1"
  )
  if [ -f models/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
    runs+=(".build/valgrind/generate models/SmolLM2-135M-Instruct.Q4_1.gguf What_is_7*6? 4 2")
  else
    echo "valgrind: note: models/SmolLM2-135M-Instruct.Q4_1.gguf missing (scripts/fetch_model.sh): tiny models only"
  fi
  # hostile.c's single-process cases (the FIFO and stale-handle cases and the generate_edge family
  # only repeat what the others run under memcheck).
  for c in static_calls load_null_arguments load_garbage_options load_bad_files free_null_and_twice bogus_handles \
           info_and_save tokenize detokenize generate_callbacks concurrent_calls trainer_garbage trainer_lifecycle \
           score concurrent_score trainer_set_reward trainer_kinds_garbage; do
    runs+=(".build/valgrind/hostile --case $c $model Tests/Fuzz/corpus/gguf/llama_f32_f16_bf16.gguf")
  done
  for r in "${runs[@]}"; do
    local log
    log=$(mktemp)
    # shellcheck disable=SC2086
    if "${vg[@]}" $r >"$log" 2>&1; then
      echo "valgrind: ok    $r"
    else
      echo "valgrind: FAIL  $r"
      grep -E '^==[0-9]+==|FAIL' "$log" | head -40
      failed=$((failed + 1))
    fi
    rm -f "$log"
  done
  [ "$failed" = 0 ] || { echo "valgrind: $failed run(s) failed" >&2; return 1; }
}

case "$what" in
  asan) run_asan "$@" ;;
  valgrind) run_valgrind ;;
  all) rc=0; run_valgrind || rc=1; run_asan "$@" || rc=1; exit $rc ;;
  *) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
