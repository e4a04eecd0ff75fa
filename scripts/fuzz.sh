#!/usr/bin/env bash
# Run every libFuzzer target of tests/fuzz/ for a bounded time; one line per
# target, then "N passed, N failed" (passed: no crash, leak, UB or broken
# contract in the time given).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
    cat <<'USAGE'
usage: scripts/fuzz.sh [TARGET...] [--help]

Runs each target (default: all of build-fuzz/fuzz/, built by `make fuzz`
or `make fuzz-build`) for FUZZ_SECONDS seconds, starting from its committed
seed corpus tests/fuzz/corpus/<target>/ and its dictionary
tests/fuzz/<dict>.dict. New inputs found go to build-fuzz/corpus/<target>/
(never into the committed corpus). A crash leaves its input in
build-fuzz/crashes/ and prints the command that replays it; add a fixed
crash's input to the committed corpus as a regression seed.

Environment:
  FUZZ_SECONDS   seconds per target (default 20)
  FUZZ_JOBS      targets run at once (default 1)
  FUZZ_ARGS      more libFuzzer flags, e.g. "-max_len=65536"
USAGE
}

TARGETS=()
for arg in "$@"; do
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option '$arg'" ;;
        *) TARGETS+=("$arg") ;;
    esac
done

cd "$ROOT"
BIN=build-fuzz/fuzz
SECS="${FUZZ_SECONDS:-20}"
OUT=build-fuzz
[[ -d "$BIN" ]] || die "no $BIN: run make fuzz-build first"
if ((${#TARGETS[@]} == 0)); then
    for t in "$BIN"/fuzz_*; do
        [[ -x "$t" && "$t" != *.d ]] && TARGETS+=("$(basename "$t")")
    done
fi

# The dictionary of a target's input format.
dict_of() {
    local t="$1" d
    case "$t" in
        fuzz_http) d=http ;;
        fuzz_h1) d=h1 ;;
        fuzz_redis) d=resp ;;
        fuzz_config) d=yaml ;;
        fuzz_chat|fuzz_journal) d=json ;;
        fuzz_stream_ollama|fuzz_response_*) d=json ;;
        fuzz_stream_*) d=sse ;;
        *) d="" ;;
    esac
    [[ -n "$d" && -f "tests/fuzz/$d.dict" ]] && echo "-dict=tests/fuzz/$d.dict"
    return 0
}

# run_one TARGET: fuzz it, print its line, return 1 on a finding.
run_one() {
    local t="$1" seeds="tests/fuzz/corpus/$1" work="$OUT/corpus/$1"
    local log="$OUT/logs/$1.log" rc=0
    mkdir -p "$work" "$OUT/crashes" "$OUT/logs" "$seeds"
    # shellcheck disable=SC2046
    "$BIN/$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$OUT/crashes/$t-" \
        $(dict_of "$t") ${FUZZ_ARGS:-} "$work" "$seeds" >"$log" 2>&1 || rc=$?
    local execs eps
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
    eps="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)"
    if ((rc == 0)); then
        printf 'ok      %-22s %10s execs  %7s exec/s  %4s inputs kept\n' \
            "$t" "${execs:-?}" "${eps:-?}" "$(ls "$work" | wc -l)"
        return 0
    fi
    local art
    art="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)"
    printf 'FAILED  %-22s exit %d after %s execs (log: %s)\n' "$t" "$rc" \
        "${execs:-?}" "$log"
    grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|contract broken' \
        "$log" | sed 's/^/        /' || true
    if [[ -n "$art" ]]; then
        echo "        input:     $art"
        echo "        reproduce: $BIN/$t $art"
    fi
    return 1
}

PASSED=0
FAILED=0
JOBS="${FUZZ_JOBS:-1}"
say "fuzzing ${#TARGETS[@]} targets, ${SECS}s each, $JOBS at a time"
if ((JOBS <= 1)); then
    for t in "${TARGETS[@]}"; do
        if run_one "$t"; then
            PASSED=$((PASSED + 1))
        else
            FAILED=$((FAILED + 1))
        fi
    done
else
    mkdir -p "$OUT/logs"
    pids=()
    for t in "${TARGETS[@]}"; do
        while (($(jobs -rp | wc -l) >= JOBS)); do
            sleep 0.2
        done
        (run_one "$t" >"$OUT/logs/$t.line"; echo $? >"$OUT/logs/$t.rc") &
        pids+=($!)
    done
    wait "${pids[@]}" || true
    for t in "${TARGETS[@]}"; do
        cat "$OUT/logs/$t.line"
        if [[ "$(cat "$OUT/logs/$t.rc")" == 0 ]]; then
            PASSED=$((PASSED + 1))
        else
            FAILED=$((FAILED + 1))
        fi
    done
fi
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
