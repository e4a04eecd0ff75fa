#!/usr/bin/env bash
# Instructions per request: the gateway under callgrind, a fixed count of
# requests, figures that do not depend on how busy the machine is.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/lib.sh"

usage() {
    cat <<'USAGE'
usage: bench/instructions.sh [--help] [BASELINE_BIN]   (make bench-instructions)

Counts the instructions Relay's worker executes per request, non-stream
and stream, with valgrind's callgrind: the same binary and requests give
the same figures on a quiet or a busy machine, where wall-clock benchmarks
(make bench-overhead) wander. Use it to see what a change costs on the hot
path; use bench-overhead for latency and throughput on a quiet machine.

One fake provider (16 tokens, at once), one gateway worker (request log to
a file, no store), a warm-up of 300 requests of each kind, then
BENCH_REQUESTS (default 2000) of each, one after another on one keep-alive
connection. Prints a table: instructions per request, non-stream and
stream, and (with BASELINE_BIN, another build of relay) the baseline's
and the ratio. BENCH_TOP=N also prints the N functions that cost most.
BENCH_MODELS=N (default 1) configures N models on the fake, in three tiers
at rising prices, and sends model "auto": the routed path users take.
Everything listens on 127.0.0.1; only processes it started are stopped.
Needs valgrind (scripts/packages.txt).

Example: compare with an older commit
  git worktree add /tmp/old HEAD~5 && make -C /tmp/old
  bench/instructions.sh /tmp/old/build/relay
USAGE
}

BASE=""
for arg in "$@"; do
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option '$arg'" ;;
        *) BASE="$arg" ;;
    esac
done
command -v valgrind >/dev/null || die "valgrind not found: run scripts/deps.sh (make deps)"
cd "$ROOT"
N="${BENCH_REQUESTS:-2000}"
RELAY_BIN="${RELAY_BIN:-build/relay}"
FAKE_BIN="${RELAY_FAKE_BIN:-build/relay-fake}"
[[ -x "$RELAY_BIN" && -x "$FAKE_BIN" ]] || die "$RELAY_BIN or $FAKE_BIN not built: run make"
[[ -z "$BASE" || -x "$BASE" ]] || die "baseline $BASE is not an executable"
TMP="$(mktemp -d /tmp/relay-instr.XXXXXX)"
KEY="glw_benchbenchbenchbenchbenchbench00"

cleanup() {
    stop_pids "$TMP"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FAKE_PORT="$(free_port)"
"$FAKE_BIN" --listen "127.0.0.1:$FAKE_PORT" --workers 1 --quiet --no-record \
    </dev/null >"$TMP/fake.log" 2>&1 &
echo $! >"$TMP/fake.pid"
wait_http_any "http://127.0.0.1:$FAKE_PORT/_fake/requests" 10 "$(cat "$TMP/fake.pid")" \
    || die "the fake provider did not start: $(cat "$TMP/fake.log")"

NMODELS="${BENCH_MODELS:-1}"
[[ "$NMODELS" =~ ^[1-9][0-9]?$ ]] || die "BENCH_MODELS must be 1..99, not '$NMODELS'"
MODEL=bench
[[ "$NMODELS" == 1 ]] || MODEL=auto

# The models of the config: "bench" alone, or m0..m(N-1) in tiers 1-3.
models_yaml() {
    if [[ "$NMODELS" == 1 ]]; then
        printf '  - {name: bench, provider: fake, upstream: "bench?ttft_ms=0&tps=0&tokens=16", price: {input: 0.05, output: 0.08}, tier: 1, context: 131072, latency: {ttft_ms: 1, tokens_per_s: 10000}}\n'
        return
    fi
    local i
    for ((i = 0; i < NMODELS; i++)); do
        printf '  - {name: m%d, provider: fake, upstream: "m%d?ttft_ms=0&tps=0&tokens=16", price: {input: 0.%02d, output: 0.%02d}, tier: %d, context: 131072, latency: {ttft_ms: %d, tokens_per_s: 10000}}\n' \
            "$i" "$i" "$((5 + 5 * i))" "$((10 + 10 * i))" "$((1 + i * 3 / NMODELS))" "$((1 + i))"
    done
}

# measure NAME BIN: prints "nonstream_ir stream_ir" per request.
measure() {
    local name="$1" bin="$2" port pid
    port="$(free_port)"
    cat >"$TMP/$name.yaml" <<CONF
listen: 127.0.0.1:$port
workers: 1
log_file: $TMP/$name-requests.log
store: "none"
auth:
  keys:
    - $KEY
providers:
  fake: {kind: openai, base_url: "http://127.0.0.1:$FAKE_PORT/v1", api_key: bench}
models:
$(models_yaml)
CONF
    valgrind --tool=callgrind --callgrind-out-file="$TMP/$name.cg.%p" \
        "$bin" serve --config "$TMP/$name.yaml" </dev/null >"$TMP/$name.log" 2>&1 &
    pid=$!
    echo "$pid" >"$TMP/$name.pid"
    wait_http "http://127.0.0.1:$port/readyz" 60 "$pid" \
        || die "$bin did not start under valgrind: $(tail -n 5 "$TMP/$name.log")"
    python3 "$ROOT/bench/instructions_load.py" "$port" "$KEY" 300 both "$MODEL"
    local out=()
    for mode in nonstream stream; do
        callgrind_control -z "$pid" >/dev/null 2>&1
        python3 "$ROOT/bench/instructions_load.py" "$port" "$KEY" "$N" "$mode" "$MODEL"
        callgrind_control -d "$mode" "$pid" >/dev/null 2>&1
        local f total
        f="$(ls -t "$TMP/$name".cg.* | head -n1)"
        total="$(callgrind_annotate "$f" 2>/dev/null |
            awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')"
        out+=("$((total / N))")
        if [[ -n "${BENCH_TOP:-}" ]]; then
            # stdout is the figures the caller reads: the list goes to stderr.
            say "$name $mode: top functions (own instructions over $N requests)" >&2
            callgrind_annotate --threshold=100 --auto=no "$f" 2>/dev/null |
                grep -E '^ *[0-9,]+ \(' |
                grep -v -E 'PROGRAM TOTALS|worker_main|clone\.S|start_thread' |
                sed -n "1,${BENCH_TOP}p" >&2
        fi
    done
    stop_pid "$TMP/$name.pid" 20
    echo "${out[*]}"
}

say "instructions per request: $N requests of each kind, one worker, $NMODELS model(s) (model \"$MODEL\"), callgrind"
read -r NS ST < <(measure relay "$RELAY_BIN")
printf '\n| instructions per request | non-stream | stream |\n|---|---:|---:|\n'
printf '| relay (%s) | %d | %d |\n' "$RELAY_BIN" "$NS" "$ST"
if [[ -n "$BASE" ]]; then
    read -r BNS BST < <(measure baseline "$BASE")
    printf '| baseline (%s) | %d | %d |\n' "$BASE" "$BNS" "$BST"
    awk -v a="$NS" -v b="$BNS" -v c="$ST" -v d="$BST" \
        'BEGIN { printf "| relay / baseline | %.3f | %.3f |\n", a / b, c / d }'
fi
