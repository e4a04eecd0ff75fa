#!/usr/bin/env bash
# Show each component of the local stack: pid, up/down, health.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
    cat <<'USAGE'
usage: scripts/status.sh [--help]        (make status)

One line per component of the stack that `make up` starts: gateway (with
its GET /healthz answer), fake provider, PostgreSQL, Redis. Reads only
the pid files in .relay/. Exits 0 when the gateway is healthy, 1 otherwise.
USAGE
}

only_help "$@"

cd "$ROOT"
listen="127.0.0.1:8080"
if [[ -f relay.yaml ]]; then
    l="$(sed -nE 's/^listen:[[:space:]]*([^[:space:]#]+).*/\1/p' relay.yaml | head -n1)"
    listen="${l:-$listen}"
fi

rc=1
line() { printf '%-12s %-5s %-8s %s\n' "$@"; }
line component state pid detail

if pid_alive "$STATE/relay.pid"; then
    pid="$(cat "$STATE/relay.pid")"
    health="$(curl -s --max-time 2 -w ' (HTTP %{http_code})' "http://$listen/healthz" 2>/dev/null || echo 'no answer')"
    line relay up "$pid" "http://$listen/healthz: $health"
    [[ "$health" == *"(HTTP 200)" ]] && rc=0
else
    line relay down - "make up starts it; log: .relay/relay.log"
fi

if pid_alive "$STATE/fake.pid"; then
    line fake up "$(cat "$STATE/fake.pid")" "127.0.0.1:9000"
else
    line fake down - ""
fi

# The dashboard is served by the gateway (dashboard.listen of relay.yaml).
dash="$(sed -n '/^dashboard:/,/^[^ #]/s/^  listen:[[:space:]]*\([^[:space:]#]*\).*/\1/p' relay.yaml 2>/dev/null | head -n1)"
if [[ -n "$dash" ]] && pid_alive "$STATE/relay.pid"; then
    code="$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "http://$dash/" 2>/dev/null || true)"
    line dashboard up "$(cat "$STATE/relay.pid")" "http://$dash/ (HTTP ${code:-none}, served by relay)"
else
    line dashboard down - "make up serves it (dashboard: in relay.yaml)"
fi
if pid_alive "$STATE/demo.pid"; then
    line demo up "$(cat "$STATE/demo.pid")" "demo traffic; log: .relay/demo.log"
fi

if [[ -d "$STATE" ]]; then
    bash scripts/services.sh status "$STATE" 2>/dev/null | while read -r name state rest; do
        if [[ "$state" == running ]]; then
            # rest: "pid N URL"
            set -- $rest
            line "$name" up "$2" "$3"
        else
            line "$name" down - ""
        fi
    done
else
    line postgresql down - ""
    line redis down - ""
fi
exit "$rc"
