#!/usr/bin/env bash
# libFuzzer targets for every parser Ponder exposes (docs/RELIABILITY.md, Tests/Fuzz).
#
#   scripts/fuzz.sh TARGET SECONDS [libFuzzer flags]  fuzz one target (e.g. -fork=2 -ignore_crashes=1)
#   scripts/fuzz.sh smoke [SECONDS]                   replay every regression input, then fuzz each
#                                                     target SECONDS (default 8) from its seeds
#   scripts/fuzz.sh regress [TARGET]                  replay the committed regression inputs only
#   scripts/fuzz.sh triage TARGET                     group a run's saved inputs by the bug they hit
#   scripts/fuzz.sh list | build
#
# The library and the targets are built with -sanitize=fuzzer,address (coverage-guided, ASan) in
# their own scratch path, .build-fuzz (work files: .build-fuzz-work), with PONDER_FUZZ set so
# Package.swift declares the ponder-fuzz executable; normal builds never see it. Exits non-zero
# on any crash, sanitizer report, hang (-timeout), or allocation beyond -malloc_limit_mb,
# printing the input's path and the top frames; keep such an input under
# Tests/Fuzz/regressions/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
ROOT=$PWD
BIN=.build-fuzz/release/ponder-fuzz
# Corpora, saved inputs and logs live beside the scratch path, not in it: SwiftPM prunes empty
# directories there on every build, including a running fuzzer's artifact directory.
OUT=.build-fuzz-work
# Swift's own crash backtracer would race ASan and libFuzzer for the signal.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:handle_sigill=1:symbolize=1}"
export PONDER_FUZZ_DIR="$ROOT/Tests/Fuzz"
# One input: 10 s and 2 GiB are orders of magnitude above what a valid input of the seeds' size
# needs, so reaching either is a bug (a hang, an allocation out of proportion to the input).
LIMITS=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048)

build() {
  [ -f Tests/Fuzz/regressions/safetensors/sampler-nonfinite-logits.safetensors ] || python3 scripts/make_fuzz_seeds.py >/dev/null
  local log=.build-fuzz/build.log
  mkdir -p .build-fuzz
  # A failed build must not leave the previous binary to fuzz stale code.
  if ! PONDER_FUZZ=1 swift build -c release --scratch-path .build-fuzz --product ponder-fuzz \
       -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing >"$log" 2>&1; then
    grep -E 'error' "$log" | head -20 >&2
    echo "fuzz.sh: build failed (log: $log)" >&2
    exit 1
  fi
  grep -E '^Build' "$log" || true
}

scratch() {
  PONDER_FUZZ_TMP=$(mktemp -d /dev/shm/ponder-fuzz.XXXXXX)
  export PONDER_FUZZ_TMP
  trap 'rm -rf "$PONDER_FUZZ_TMP"' EXIT
}

targets() { PONDER_FUZZ_TARGET=list "$BIN"; }

# The first frames of a crash report that are Ponder's (demangled), under the error line.
top_frames() {
  grep -E '^(==[0-9]+==ERROR|ponder-fuzz: BUG|SUMMARY)|^    #[0-9]+ ' "$1" \
    | grep -vE 'compiler-rt|libc\.so|__sanitizer|fuzzer::|<compiler-generated>|ponder_fuzz_main|nptl/|raise\.c|abort\.c| bug\(_:\)' \
    | swift demangle --simplified | sed -E 's/^ +#[0-9]+ 0x[0-9a-f]+ in /    /' | head -"${2:-10}" || true
}

# One line naming the bug an input hits: the harness's BUG message, else the first frame in
# Ponder's sources, else the sanitizer's or libFuzzer's error line.
signature() {
  local sig
  sig=$(grep -m1 -oE 'ponder-fuzz: BUG: .{0,70}' "$1" | sed -E 's/[0-9]+/N/g' || true)
  [ -n "$sig" ] || sig=$(top_frames "$1" 40 | grep -m1 '/Sources/' | sed -E 's/^ +//; s|/[^ ]*/Sources/|Sources/|' || true)
  [ -n "$sig" ] || sig=$(grep -m1 -oE '(ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer): .{0,60})|ALARM: .{0,40}' "$1" || true)
  echo "${sig:-unknown}"
}

# Replays every file under Tests/Fuzz/regressions/TARGET; returns the number that fail.
regress_target() {
  local t=$1 failed=0 f
  [ -d "Tests/Fuzz/regressions/$t" ] || return 0
  for f in "Tests/Fuzz/regressions/$t"/*; do
    [ -f "$f" ] || continue
    local log="$OUT/logs/regress-$t-$(basename "$f").log"
    if PONDER_FUZZ_TARGET=$t "$BIN" "${LIMITS[@]}" "$f" >"$log" 2>&1; then
      echo "  ok    $t/$(basename "$f")"
    else
      echo "  FAIL  $t/$(basename "$f") (log: $log)"
      top_frames "$log" 6
      failed=$((failed + 1))
    fi
  done
  return $failed
}

# Fuzzes one target; prints "TARGET EXECS SECONDS CRASHES" as its last line.
fuzz_target() {
  local t=$1 secs=$2 work=$3
  shift 3
  mkdir -p "$work" "$OUT/artifacts/$t" $OUT/logs
  local log="$OUT/logs/$t.log" rc=0 start=$SECONDS dict=()
  [ ! -f "Tests/Fuzz/dict/$t.dict" ] || dict=(-dict="Tests/Fuzz/dict/$t.dict")
  PONDER_FUZZ_TARGET=$t "$BIN" "${LIMITS[@]}" "${dict[@]}" -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix="$OUT/artifacts/$t/" "$@" "$work" "Tests/Fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  local execs
  execs=$(grep -oE '^stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1 || true)
  [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
  # -fork mode counts its workers' crashes, OOMs and timeouts in the status line.
  local crashes forked
  crashes=$(grep -c 'Test unit written to' "$log" || true)
  forked=$(grep -oE 'oom/timeout/crash: [0-9]+/[0-9]+/[0-9]+' "$log" | tail -1 | grep -oE '[0-9]+/[0-9]+/[0-9]+' || true)
  if [ -n "$forked" ]; then IFS=/ read -r oom slow crash <<<"$forked"; crashes=$((oom + slow + crash)); fi
  [ "$rc" = 0 ] || [ "$crashes" -gt 0 ] || crashes=1
  if [ "$rc" != 0 ] || [ "$crashes" -gt 0 ]; then
    echo "$t: CRASH (exit $rc), log: $log" >&2
    grep -oE 'Test unit written to .*' "$log" | sed 's/^/  /' >&2 || true
    top_frames "$log" >&2
  fi
  echo "$t ${execs:-0} $((SECONDS - start)) $crashes"
  [ "$rc" = 0 ] && [ "$crashes" = 0 ]
}

case "${1:-}" in
  build)
    build
    ;;
  list)
    build >/dev/null
    targets
    ;;
  regress)
    build
    scratch
    mkdir -p $OUT/logs
    failed=0
    for t in ${2:-$(targets)}; do regress_target "$t" || failed=$((failed + $?)); done
    [ "$failed" = 0 ] || { echo "fuzz.sh: $failed regression input(s) still crash" >&2; exit 1; }
    ;;
  smoke)
    secs=${2:-8}
    build
    scratch
    mkdir -p $OUT/logs
    echo "fuzz smoke: committed regression inputs"
    failed=0
    for t in $(targets); do regress_target "$t" || failed=$((failed + $?)); done
    echo "fuzz smoke: each target ${secs}s from its seed corpus"
    printf '  %-18s %12s %8s %8s\n' target executions seconds crashes
    work=$(mktemp -d /dev/shm/ponder-fuzz-corpus.XXXXXX)
    trap 'rm -rf "$PONDER_FUZZ_TMP" "$work"' EXIT
    for t in $(targets); do
      line=$(fuzz_target "$t" "$secs" "$work/$t") || failed=$((failed + 1))
      printf '  %-18s %12s %8s %8s\n' $line
    done
    [ "$failed" = 0 ] || { echo "fuzz.sh: smoke failed ($failed)" >&2; exit 1; }
    ;;
  triage)
    # Groups the inputs a run saved ($OUT/artifacts/TARGET) by the bug they hit.
    t=${2:?usage: scripts/fuzz.sh triage TARGET}
    build >/dev/null
    scratch
    mkdir -p $OUT/logs/triage
    for f in $OUT/artifacts/"$t"/*; do
      [ -f "$f" ] || continue
      log="$OUT/logs/triage/$(basename "$f").log"
      PONDER_FUZZ_TARGET=$t "$BIN" "${LIMITS[@]}" "$f" >"$log" 2>&1 || true
      printf '%s\t%s\t%s\n' "$(signature "$log")" "$(stat -c %s "$f")" "$f"
    done | sort -t"$(printf '\t')" -k1,1 -k2,2n \
      | awk -F'\t' '{n[$1]++; if (!($1 in ex)) ex[$1]=$3 " (" $2 " bytes)"} END {for (s in n) printf "%5d  %s\n       smallest: %s\n", n[s], s, ex[s]}'
    ;;
  ''|-h|--help)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
  *)
    t=$1
    secs=${2:?usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer flags]}
    shift 2
    build
    targets | grep -qx "$t" || { echo "fuzz.sh: no target $t (scripts/fuzz.sh list)" >&2; exit 2; }
    scratch
    line=$(fuzz_target "$t" "$secs" "$OUT/corpus/$t" "$@") && rc=0 || rc=1
    read -r _ execs took crashes <<<"$line"
    echo "$t: $execs executions in ${took}s, $crashes crash(es)"
    exit $rc
    ;;
esac
