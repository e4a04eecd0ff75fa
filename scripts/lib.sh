# Shared helpers for the scripts in this folder. Sourced, never run.
# Defines: ROOT (repository root), say/warn/die, free_port, port_again,
# env_file_set, pid_alive,
# stop_pid, apt_packages, wait_http; for the benchmarks and the soak:
# run_dir, run_bg, services_up/services_down, fake_up; only_help.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say()  { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

# The apt packages, from the one list in scripts/packages.txt.
apt_packages() {
    sed -e 's/#.*//' -e 's/[[:space:]]//g' "$ROOT/scripts/packages.txt" | grep -v '^$'
}

# Print a TCP port on 127.0.0.1 that was free a moment ago (the kernel
# picks it: bind port 0 and read it back).
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# port_again FILE: the port in FILE if it is free now (a service started in
# the same folder before keeps its URL), else a free one.
port_again() {
    local p=""
    [[ -f "$1" ]] && p="$(cat "$1" 2>/dev/null || true)"
    if [[ "$p" =~ ^[0-9]+$ ]] && python3 -c 'import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))' "$p" 2>/dev/null; then
        echo "$p"
    else
        free_port
    fi
}

# True when the pid in FILE (or the pid given) is a live process.
pid_alive() {
    local pid="$1"
    [[ -f "$pid" ]] && pid="$(cat "$pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# Stop the process whose pid is in FILE: TERM, wait up to TIMEOUT seconds
# (default 10), then KILL. Removes the pid file. Only ever that pid.
stop_pid() {
    local file="$1" timeout="${2:-10}" pid i
    [[ -f "$file" ]] || return 0
    pid="$(cat "$file" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < timeout * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            warn "pid $pid did not stop within ${timeout}s; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$file"
}

# Stop every process with a pid file DIR/*.pid (a script's own children),
# each given TIMEOUT seconds (default 10): what a benchmark's EXIT trap
# does before removing DIR.
stop_pids() {
    local f
    for f in "$1"/*.pid; do
        [[ -f "$f" ]] && stop_pid "$f" "${2:-10}"
    done
    return 0
}

# only_help "$@": for a command that takes no argument but --help: prints
# the caller's usage and exits 0 for -h or --help, dies (usage on stderr)
# for anything else.
only_help() {
    local arg
    for arg in "$@"; do
        case "$arg" in
            -h|--help) usage; exit 0 ;;
            *) usage >&2; die "unknown argument '$arg'" ;;
        esac
    done
}

# The start-up the benchmarks and the soak share (bench/features.sh,
# tests/soak/soak.sh): a run folder, children with pid files in it,
# throw-away PostgreSQL and Redis, and the fake provider.

# run_dir NAME: sets TMP to a new folder /tmp/NAME.XXXXXX and SVC to the
# services' folder inside it. The postgres user runs the database under
# SVC, so TMP is made readable to it.
run_dir() {
    TMP="$(mktemp -d "/tmp/$1.XXXXXX")"
    chmod 755 "$TMP"
    SVC="$TMP/services"
}

# run_bg NAME CMD...: runs CMD in the background, its output appended to
# $TMP/NAME.log and its pid in $TMP/NAME.pid (stop_pids "$TMP" ends it).
run_bg() {
    local name="$1"
    shift
    "$@" </dev/null >>"$TMP/$name.log" 2>&1 &
    echo $! >"$TMP/$name.pid"
}

# services_up: starts throw-away PostgreSQL and Redis in $SVC
# (scripts/services.sh) and exports DATABASE_URL and REDIS_URL.
services_up() {
    local env
    env="$(bash "$ROOT/scripts/services.sh" start "$SVC")" \
        || die "could not start PostgreSQL and Redis (see above)"
    eval "$env"
}

# services_down: stops what services_up started; never fails.
services_down() {
    bash "$ROOT/scripts/services.sh" stop "$SVC" >/dev/null 2>&1 || true
}

# fake_up BIN: starts the fake provider BIN (one worker, quiet, recording
# nothing) on a free port of 127.0.0.1, FAKE_PORT, and waits for it.
fake_up() {
    FAKE_PORT="$(free_port)"
    run_bg fake "$1" --listen "127.0.0.1:$FAKE_PORT" --workers 1 --quiet \
        --no-record
    wait_http_any "http://127.0.0.1:$FAKE_PORT/_fake/requests" 10 \
        "$(cat "$TMP/fake.pid")" \
        || die "the fake provider did not start: $(tail -n 5 "$TMP/fake.log")"
}

# wait_http URL SECONDS [PID]: poll until URL answers 200; fails early when
# PID (if given) has exited.
wait_http() {
    local url="$1" secs="$2" pid="${3:-}" i
    for ((i = 0; i < secs * 10; i++)); do
        if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then
            return 0
        fi
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

# Run a command as root: directly when we are root, else through sudo.
as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root for: $* (install sudo or run as root)"
    fi
}

# wait_http_any URL SECONDS [PID]: poll until URL gives any HTTP answer.
wait_http_any() {
    local url="$1" secs="$2" pid="${3:-}" i
    for ((i = 0; i < secs * 10; i++)); do
        if curl -s -o /dev/null --max-time 1 "$url" 2>/dev/null; then
            return 0
        fi
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

# Export KEY=VALUE lines of an env file, without overriding variables that
# are already set to a non-empty value. Quotes around a value are dropped.
# env_file_set FILE KEY VALUE: sets KEY=VALUE in the dotenv FILE, replacing
# the line of KEY if there is one (commented or not), else appending it.
env_file_set() {
    local file="$1" key="$2" val="$3" tmp
    tmp="$(mktemp "$file.XXXXXX")"
    if grep -Eq "^[#[:space:]]*$key=" "$file" 2>/dev/null; then
        awk -v k="$key" -v v="$val" '
            !done && $0 ~ "^[#[:space:]]*" k "=" { print k "=" v; done = 1; next }
            { print }' "$file" >"$tmp"
    else
        { cat "$file" 2>/dev/null || true; echo "$key=$val"; } >"$tmp"
    fi
    chmod --reference="$file" "$tmp" 2>/dev/null || chmod 600 "$tmp"
    mv "$tmp" "$file"
}

load_env_file() {
    local file="$1" line key val
    [[ -f "$file" ]] || return 0
    while IFS= read -r line || [[ -n "$line" ]]; do
        line="${line#"${line%%[![:space:]]*}"}"
        [[ -z "$line" || "$line" == \#* ]] && continue
        line="${line#export }"
        [[ "$line" =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
        key="${BASH_REMATCH[1]}"
        val="${BASH_REMATCH[2]}"
        if [[ "$val" =~ ^\"(.*)\"$ || "$val" =~ ^\'(.*)\'$ ]]; then
            val="${BASH_REMATCH[1]}"
        fi
        if [[ -z "${!key:-}" ]]; then
            export "$key=$val"
        fi
    done <"$file"
}

# The local stack's files (make up / down / status / logs).
STATE="$ROOT/.relay"
