#!/usr/bin/env bash
# Stop the local stack that scripts/up.sh started, by its pid files only.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
    cat <<'USAGE'
usage: scripts/down.sh [--help]        (make down)

Stops what `make up` started, using only the pid files in .relay/:
the gateway (.relay/relay.pid), the fake provider (.relay/fake.pid), and
PostgreSQL + Redis (scripts/services.sh stop .relay). Data, the API key,
.env and relay.yaml are kept; `make up` starts it all again. Running it when
nothing is up is harmless.
USAGE
}

only_help "$@"

if [[ ! -d "$STATE" ]]; then
    say "nothing to stop (.relay/ does not exist)"
    exit 0
fi

# The dashboard is served by the gateway itself (dashboard: in relay.yaml);
# the demo traffic generator is a process of its own.
for name in demo relay fake; do
    if pid_alive "$STATE/$name.pid"; then
        say "stopping $name (pid $(cat "$STATE/$name.pid"))"
        stop_pid "$STATE/$name.pid" 15
    else
        say "$name not running"
        rm -f "$STATE/$name.pid"
    fi
done

if [[ -d "$STATE/pg" || -d "$STATE/redis" ]]; then
    bash "$ROOT/scripts/services.sh" stop "$STATE"
fi
say "stack stopped (state kept in .relay/)"
