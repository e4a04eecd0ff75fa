#!/usr/bin/env bash
# Follow the logs of the local stack.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
    cat <<'USAGE'
usage: scripts/logs.sh [relay|fake|postgres|redis|all] [-n LINES] [--help]
       (make logs)

Follows (tail -F) the logs under .relay/ of the stack `make up` started:
  relay     .relay/relay.log (gateway, one JSON line per request)
  fake      .relay/fake.log (fake provider)
  postgres  .relay/pg/postgres.log
  redis     .relay/redis/redis.log
  all       every one of them (default: relay and fake)
-n LINES    lines of history to show first (default 20). Ctrl-C stops.
USAGE
}

which=default
lines=20
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        -n) [[ $# -ge 2 ]] || die "-n needs a number"; lines="$2"; shift ;;
        relay|fake|postgres|redis|all) which="$1" ;;
        *) usage >&2; die "unknown argument '$1'" ;;
    esac
    shift
done

case "$which" in
    relay) files=("$STATE/relay.log") ;;
    fake) files=("$STATE/fake.log") ;;
    postgres) files=("$STATE/pg/postgres.log") ;;
    redis) files=("$STATE/redis/redis.log") ;;
    all) files=("$STATE/relay.log" "$STATE/fake.log" "$STATE/pg/postgres.log" "$STATE/redis/redis.log") ;;
    *) files=("$STATE/relay.log" "$STATE/fake.log") ;;
esac
# The dashboard is served by relay (its lines are in relay.log); the demo
# traffic has its own log.
[[ -f "$STATE/demo.log" && "$which" != fake ]] && files+=("$STATE/demo.log")

[[ -d "$STATE" ]] || die "no .relay/ yet: start the stack with make up"
exec tail -n "$lines" -F "${files[@]}"
