#!/usr/bin/env bash
# Scrape-under-load benchmark: Relay's throughput with and without a
# Prometheus-like scraper hitting GET /metrics ten times a second.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/lib.sh"

usage() {
    cat <<'USAGE'
usage: bench/metrics.sh [--help]

Starts build/relay-fake and build/relay (BENCH_WORKERS workers, no
request log store unless BENCH_STORE, four models so the scrape has
several series), then runs
wrk with bench/chat.lua three times for BENCH_SECONDS each: alone, while
curl GETs /healthz every 100 ms (what the scraper process itself costs on
the same cores), and while curl GETs /metrics every 100 ms. Prints the
three rps, the ratios and the scrapes made. A measurement, not an assertion: counting is
per-worker and lock-free, so the two should be within noise.

Environment:
  BENCH_SECONDS      measured seconds per run (default 5)
  BENCH_WORKERS      Relay workers (default 2)
  BENCH_CONNECTIONS  wrk connections (default 32)
  BENCH_STORE        none (default), sqlite, or a postgres:// URL
  RELAY_BIN, RELAY_FAKE_BIN   binaries (default build/relay, build/relay-fake)
USAGE
}

case "${1:-}" in
    "") ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
esac

cd "$ROOT"
SECS="${BENCH_SECONDS:-5}"
WORKERS="${BENCH_WORKERS:-2}"
CONNS="${BENCH_CONNECTIONS:-32}"
RELAY_BIN="${RELAY_BIN:-build/relay}"
FAKE_BIN="${RELAY_FAKE_BIN:-build/relay-fake}"
KEY="glw_benchbenchbenchbenchbenchbench00"
for tool in wrk curl; do
    command -v "$tool" >/dev/null || die "$tool not found: run scripts/deps.sh"
done
[[ -x "$RELAY_BIN" && -x "$FAKE_BIN" ]] || die "binaries not built: run make"

TMP="$(mktemp -d /tmp/relay-bench-metrics.XXXXXX)"
# Only what this script started (its pid files) is stopped.
trap 'stop_pids "$TMP"; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM
start() {
    "${@:2}" </dev/null >>"$TMP/$1.log" 2>&1 &
    echo $! >"$TMP/$1.pid"
}

FAKE_PORT="$(free_port)"
start fake "$FAKE_BIN" --listen "127.0.0.1:$FAKE_PORT" --workers 1
wait_http_any "http://127.0.0.1:$FAKE_PORT/_fake/requests" 10 \
    "$(cat "$TMP/fake.pid")" || die "the fake provider did not start"

case "${BENCH_STORE:-none}" in
    none) STORE_URL=none ;;
    sqlite) STORE_URL="sqlite:$TMP/relay.db" ;;
    *) STORE_URL="$BENCH_STORE" ;;
esac
RELAY_PORT="$(free_port)"
{
    printf 'listen: 127.0.0.1:%s\nworkers: %s\nlog_level: warn\n' \
        "$RELAY_PORT" "$WORKERS"
    printf 'store: "%s"\nauth:\n  keys:\n    - %s\n' "$STORE_URL" "$KEY"
    printf 'providers:\n  fake:\n    kind: openai\n'
    printf '    base_url: http://127.0.0.1:%s/v1\n    api_key: bench\n' \
        "$FAKE_PORT"
    printf 'models:\n'
    for m in bench m2 m3 m4; do
        printf '  - name: %s\n    provider: fake\n' "$m"
        printf '    upstream: "bench?ttft_ms=0&tps=0&tokens=16"\n'
        printf '    price: {input: 0.05, output: 0.08}\n'
        printf '    latency: {ttft_ms: 1, tokens_per_s: 10000}\n'
    done
} >"$TMP/relay.yaml"
start relay "$RELAY_BIN" serve --config "$TMP/relay.yaml"
wait_http "http://127.0.0.1:$RELAY_PORT/readyz" 15 "$(cat "$TMP/relay.pid")" \
    || { cat "$TMP/relay.log"; die "relay did not start"; }
URL="http://127.0.0.1:$RELAY_PORT/v1/chat/completions"
# Fill a few series besides the benchmark's.
for m in m2 m3 m4 nope; do
    curl -s -o /dev/null -H "Authorization: Bearer $KEY" \
        -H 'Content-Type: application/json' \
        -d "{\"model\":\"$m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}" \
        "$URL" || true
done

# rps: one wrk run; prints its requests per second.
rps() {
    BENCH_KEY="$KEY" BENCH_MODEL=bench timeout -k 5 $((SECS + 30)) \
        wrk -t 2 -c "$CONNS" -d "${SECS}s" -s bench/chat.lua "$URL" \
        2>/dev/null | sed -n 's/^BENCH .*rps=\([0-9.]*\).*/\1/p' | tail -n1
}

say "warm-up (2 s)"
SECS_SAVED="$SECS"
SECS=2 rps >/dev/null
SECS="$SECS_SAVED"
say "wrk alone, ${SECS}s, $CONNS connections, $WORKERS workers"
ALONE="$(rps)"
# scraped PATH: one wrk run while curl GETs PATH every 100 ms.
scraped() {
    (
        n=0
        while :; do
            curl -s -o "$TMP/last-${1#/}.txt" "http://127.0.0.1:$RELAY_PORT$1" \
                && n=$((n + 1)) && echo "$n" >"$TMP/scrapes"
            sleep 0.1
        done
    ) &
    echo $! >"$TMP/scraper.pid"
    rps
    stop_pid "$TMP/scraper.pid" 5
}
# With BENCH_STORE=sqlite the request log grows with each run and the
# later runs pay for a larger index: compare with care.
say "wrk with a 10 Hz scraper of /metrics"
SCRAPED="$(scraped /metrics)"
SCRAPES="$(cat "$TMP/scrapes" 2>/dev/null || echo 0)"
say "wrk with a 10 Hz curl of /healthz (the scraper's own cost)"
CONTROL="$(scraped /healthz)"
BYTES="$(wc -c <"$TMP/last-metrics.txt" 2>/dev/null || echo 0)"
printf '\n| run | rps |\n|---|---|\n| wrk alone | %s |\n' "$ALONE"
printf '| wrk + 10 Hz curl of /healthz | %s |\n' "$CONTROL"
printf '| wrk + 10 Hz scrape of /metrics | %s |\n\n' "$SCRAPED"
awk -v a="$ALONE" -v c="$CONTROL" -v b="$SCRAPED" -v n="$SCRAPES" \
    -v s="$BYTES" 'BEGIN { if (a > 0 && c > 0)
    printf "metrics/alone %.3f, metrics/healthz %.3f; %d scrapes of %d bytes\n",
           b / a, b / c, n, s }'
