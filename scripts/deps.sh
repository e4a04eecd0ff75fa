#!/usr/bin/env bash
# Install everything Relay needs on Debian 12, skipping what is present.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
    cat <<'USAGE'
usage: scripts/deps.sh [--check] [--help]

Installs what building, testing and running Relay needs on Debian 12:
  1. apt packages listed in scripts/packages.txt (checked with dpkg -s;
     `apt-get update` runs only when something is missing; sudo is used
     only when not root),
  2. Python packages from tests/requirements.txt (checked by importing them;
     pip gets --break-system-packages only when the interpreter is
     externally managed),
  3. npm packages of tests/e2e/node/ (npm ci with a package-lock.json, else
     npm install; skipped while that folder has no package.json), and of
     dashboard/ (npm ci: Vite, React, Vitest, playwright-core).
Everything already present is left alone, so running it twice is cheap.

  --check   install nothing: exit 0 when all is present, 1 otherwise
            (used by scripts/up.sh to decide whether to run this script).
USAGE
}

CHECK=0
for arg in "$@"; do
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        --check) CHECK=1 ;;
        *) usage >&2; die "unknown argument '$arg'" ;;
    esac
done

export DEBIAN_FRONTEND=noninteractive
missing_total=0

# ---- apt ---------------------------------------------------------------
apt_missing=()
while read -r pkg; do
    if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
        apt_missing+=("$pkg")
    fi
done < <(apt_packages)

if ((${#apt_missing[@]} == 0)); then
    say "apt packages: all $(apt_packages | wc -l) present"
elif ((CHECK)); then
    say "apt packages missing: ${apt_missing[*]}"
    missing_total=1
else
    say "installing apt packages: ${apt_missing[*]}"
    as_root apt-get update -q
    as_root apt-get install -y -q --no-install-recommends "${apt_missing[@]}"
fi

# ---- Python ------------------------------------------------------------
# Import name of each distribution when it differs from the package name.
import_name() {
    case "$1" in
        pyyaml) echo yaml ;;
        google-genai) echo google.genai ;;
        *) echo "${1//-/_}" ;;
    esac
}

req="$ROOT/tests/requirements.txt"
py_missing=()
if [[ -f "$req" ]]; then
    while read -r line; do
        line="${line%%#*}"
        name="$(echo "$line" | sed -E 's/[<>=!~;[ ].*//' | tr 'A-Z' 'a-z')"
        [[ -n "$name" ]] || continue
        if ! python3 -c "import $(import_name "$name")" 2>/dev/null; then
            py_missing+=("$name")
        fi
    done < "$req"
fi

if ((${#py_missing[@]} == 0)); then
    say "python packages: all present"
elif ((CHECK)); then
    say "python packages missing: ${py_missing[*]}"
    missing_total=1
else
    say "installing python packages: ${py_missing[*]}"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        die "python3 has no pip; install python3-pip (apt) and run this again"
    fi
    pip_log="$(mktemp)"
    if ! python3 -m pip install -q --root-user-action=ignore -r "$req" 2>"$pip_log"; then
        if grep -q externally-managed-environment "$pip_log"; then
            say "python3 is externally managed; retrying with --break-system-packages"
            python3 -m pip install -q --root-user-action=ignore --break-system-packages -r "$req"
        else
            cat "$pip_log" >&2
            rm -f "$pip_log"
            die "pip install failed (see above); fix it and run scripts/deps.sh again"
        fi
    fi
    rm -f "$pip_log"
fi

# ---- npm ---------------------------------------------------------------
node_dir="$ROOT/tests/e2e/node"
if [[ ! -f "$node_dir/package.json" ]]; then
    say "npm packages: skipped (tests/e2e/node/package.json does not exist yet)"
elif ! command -v npm >/dev/null; then
    warn "npm not found: install Node.js 18+ (apt-get install nodejs npm) for the Node e2e tests"
    missing_total=1
elif (cd "$node_dir" && npm ls --depth=0 >/dev/null 2>&1); then
    say "npm packages: all present"
elif ((CHECK)); then
    say "npm packages missing in tests/e2e/node"
    missing_total=1
else
    if [[ -f "$node_dir/package-lock.json" ]]; then
        say "installing npm packages (npm ci in tests/e2e/node)"
        (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
    else
        say "installing npm packages (npm install in tests/e2e/node)"
        (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error)
    fi
fi

# The dashboard's packages (Vite, React, Vitest, playwright-core), from its
# package-lock.json; the build itself is scripts/dashboard.sh (make up,
# make dashboard, the e2e level of scripts/test.sh).
dash_dir="$ROOT/dashboard"
if [[ ! -f "$dash_dir/package-lock.json" ]]; then
    say "dashboard npm packages: skipped (no dashboard/package-lock.json)"
elif ! command -v npm >/dev/null; then
    warn "npm not found: install Node.js 18+ for the dashboard"
    missing_total=1
elif (cd "$dash_dir" && npm ls --depth=0 >/dev/null 2>&1); then
    say "dashboard npm packages: all present"
elif ((CHECK)); then
    say "npm packages missing in dashboard/"
    missing_total=1
else
    say "installing the dashboard's npm packages (npm ci in dashboard/)"
    (cd "$dash_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi

if ((CHECK)); then
    exit "$missing_total"
fi
say "dependencies ready"
