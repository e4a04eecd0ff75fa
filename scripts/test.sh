#!/usr/bin/env bash
# Run the test levels and print one total line: "N passed, N failed".
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
    cat <<'USAGE'
usage: scripts/test.sh [unit|integration|reliability|e2e|all ...] [--help]

Runs the chosen levels (default: all, in that order) and ends with exactly
one line, "N passed, N failed", summed over every level that ran. Exits 1
when anything failed (a crashed test binary or runner counts as a failure).

  unit         each build/tests/test_* (cmocka; build them with `make unit`)
  integration  python3 tests/integration/run.py, against $RELAY_BIN and
               $RELAY_FAKE_BIN (default build/relay and build/relay-fake)
  reliability  python3 tests/integration/run.py --dir tests/reliability:
               provider and store faults, bad input, security
               (docs/reliability.md)
  e2e          python3 -m pytest -q tests/e2e/python tests/e2e/provider_sdks
               node --test --test-reporter=tap tests/e2e/node/
               the dashboard: scripts/dashboard.sh build, then Vitest
               (npx vitest run in dashboard/) and headless Chromium
               (node --test tests/e2e/dashboard/; screenshots in
               tests/e2e/dashboard/artifacts/)

A level whose runner or folder does not exist yet is reported as skipped
and not counted. Integration, reliability and e2e need PostgreSQL and Redis: when
DATABASE_URL / REDIS_URL are not set, throw-away ones are started with
scripts/services.sh in a temporary folder and stopped at the end.

Environment:
  RELAY_BIN, RELAY_FAKE_BIN   binaries under test (passed to the runners)
  DATABASE_URL, REDIS_URL     use these services instead of starting some
  TEST_TIMEOUT_UNIT           seconds per unit binary (default 300)
  UNIT_BUILD                  where the unit binaries are (default build; make asan-unit: build-asan)
  TEST_TIMEOUT_LEVEL          seconds per integration/e2e runner (default 1800)
USAGE
}

levels=()
for arg in "$@"; do
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        unit|integration|reliability|e2e|all) levels+=("$arg") ;;
        *) usage >&2; die "unknown level '$arg' (unit, integration, reliability, e2e or all)" ;;
    esac
done
((${#levels[@]})) || levels=(all)

cd "$ROOT"
export RELAY_BIN="${RELAY_BIN:-build/relay}"
export RELAY_FAKE_BIN="${RELAY_FAKE_BIN:-build/relay-fake}"
T_UNIT="${TEST_TIMEOUT_UNIT:-300}"
T_LEVEL="${TEST_TIMEOUT_LEVEL:-1800}"

TOTAL_P=0
TOTAL_F=0
TMP="$(mktemp -d)"
SVC_DIR=""

cleanup() {
    if [[ -n "$SVC_DIR" ]]; then
        bash "$ROOT/scripts/services.sh" stop "$SVC_DIR" >/dev/null 2>&1 || true
        rm -rf "$SVC_DIR"
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# add LABEL PASSED FAILED: print the level's sub-summary, add to the total.
add() {
    say "$1: $2 passed, $3 failed"
    TOTAL_P=$((TOTAL_P + $2))
    TOTAL_F=$((TOTAL_F + $3))
}

skip() { say "$1: skipped ($2)"; }

# Start throw-away services once, unless the caller gave us some.
need_services() {
    if [[ -n "${DATABASE_URL:-}" && -n "${REDIS_URL:-}" ]]; then
        return 0
    fi
    [[ -n "$SVC_DIR" ]] && return 0
    SVC_DIR="$(mktemp -d /tmp/relay-test-svc.XXXXXX)"
    say "starting throw-away PostgreSQL and Redis in $SVC_DIR"
    local out
    out="$(bash "$ROOT/scripts/services.sh" start "$SVC_DIR")" \
        || die "could not start services (see above); or set DATABASE_URL and REDIS_URL"
    eval "$out"
    export DATABASE_URL REDIS_URL
}

# ---- unit ----------------------------------------------------------------
run_unit() {
    shopt -s nullglob
    local srcs=(tests/unit/test_*.c) bins=() b name log rc p f lp lf
    shopt -u nullglob
    if ((${#srcs[@]} == 0)); then
        skip unit "no tests/unit/test_*.c yet"
        return
    fi
    say "unit: ${#srcs[@]} test binaries"
    p=0
    f=0
    for src in "${srcs[@]}"; do
        name="$(basename "$src" .c)"
        b="${UNIT_BUILD:-build}/tests/$name"
        if [[ ! -x "$b" ]]; then
            echo "  $name: FAILED: $b is not built (run: make unit)"
            f=$((f + 1))
            continue
        fi
        log="$TMP/$name.log"
        rc=0
        timeout -k 5 "$T_UNIT" "$b" >"$log" 2>&1 || rc=$?
        lp="$(sed -n 's/^\[  PASSED  \] \([0-9][0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')"
        lf="$(sed -n 's/^\[  FAILED  \] \([0-9][0-9]*\) test.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')"
        if ((rc != 0 && lf == 0)); then
            lf=1   # crashed, timed out, or failed without saying so
        fi
        if ((lf > 0)); then
            echo "  $name: $lp passed, $lf failed (exit $rc); its output:"
            sed 's/^/    | /' "$log"
            if ((rc == 124)); then echo "    (killed after ${T_UNIT}s)"; fi
            if ((rc > 128)); then echo "    (crashed: signal $((rc - 128)))"; fi
        else
            echo "  $name: $lp passed"
        fi
        p=$((p + lp))
        f=$((f + lf))
    done
    add unit "$p" "$f"
}

# ---- integration, reliability ----------------------------------------------
# run_cases LEVEL DIR: python3 tests/integration/run.py --dir DIR.
run_cases() {
    local name="$1" dir="$2"
    if [[ ! -f tests/integration/run.py ]]; then
        skip "$name" "tests/integration/run.py does not exist yet"
        return
    fi
    if [[ ! -d "$dir" ]]; then
        skip "$name" "$dir does not exist yet"
        return
    fi
    need_services
    say "$name: python3 tests/integration/run.py --dir $dir (RELAY_BIN=$RELAY_BIN RELAY_FAKE_BIN=$RELAY_FAKE_BIN)"
    local log="$TMP/$name.log" rc=0 line p f
    set +e
    timeout -k 10 "$T_LEVEL" python3 tests/integration/run.py --dir "$dir" 2>&1 | tee "$log"
    rc="${PIPESTATUS[0]}"
    set -e
    line="$(grep -E '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed' "$log" | tail -n1 || true)"
    if [[ -z "$line" ]]; then
        echo "  the $name runner printed no 'N passed, N failed' line (exit $rc)"
        add "$name" 0 1
        return
    fi
    p="$(sed -E 's/^([A-Za-z]+: )?([0-9]+) passed.*/\2/' <<<"$line")"
    f="$(sed -E 's/^([A-Za-z]+: )?[0-9]+ passed, ([0-9]+) failed.*/\2/' <<<"$line")"
    if ((rc != 0 && f == 0)); then
        echo "  the $name runner exited $rc"
        f=1
    fi
    add "$name" "$p" "$f"
}

run_integration() { run_cases integration tests/integration; }
run_reliability() { run_cases reliability tests/reliability; }

# ---- e2e -----------------------------------------------------------------
# count WORD LINE: the number before WORD in pytest's summary line.
count() { { grep -oE "[0-9]+ $1" <<<"$2" || true; } | awk '{s+=$1} END {print s+0}'; }

run_e2e_python() {
    shopt -s nullglob
    local files=(tests/e2e/python/test_*.py tests/e2e/python/*_test.py)
    shopt -u nullglob
    if [[ ! -d tests/e2e/python ]]; then
        skip "e2e python" "tests/e2e/python does not exist yet"
        return
    fi
    if ((${#files[@]} == 0)); then
        skip "e2e python" "no test_*.py in tests/e2e/python yet"
        return
    fi
    python3 -c 'import pytest' 2>/dev/null || { echo "  pytest missing: run scripts/deps.sh"; add "e2e python" 0 1; return; }
    need_services
    say "e2e python: python3 -m pytest -q tests/e2e/python tests/e2e/provider_sdks"
    local log="$TMP/e2e-python.log" rc=0 line p f
    set +e
    timeout -k 10 "$T_LEVEL" python3 -m pytest -q -p no:cacheprovider tests/e2e/python tests/e2e/provider_sdks 2>&1 | tee "$log"
    rc="${PIPESTATUS[0]}"
    set -e
    if ((rc == 5)); then
        skip "e2e python" "pytest collected no tests"
        return
    fi
    line="$(grep -E '[0-9]+ (passed|failed|error)' "$log" | tail -n1 || true)"
    p="$(count passed "$line")"
    f=$(($(count failed "$line") + $(count 'errors?' "$line")))
    if ((rc != 0 && f == 0)); then
        echo "  pytest exited $rc"
        f=1
    fi
    add "e2e python" "$p" "$f"
}

run_e2e_node() {
    if [[ ! -d tests/e2e/node ]]; then
        skip "e2e node" "tests/e2e/node does not exist yet"
        return
    fi
    local files
    files="$(find tests/e2e/node -path '*/node_modules' -prune -o \
        \( -name '*.test.js' -o -name '*.test.mjs' -o -name 'test_*.js' -o -name 'test_*.mjs' -o -name 'test-*.js' -o -name 'test-*.mjs' -o -path '*/test/*.js' -o -path '*/test/*.mjs' \) -print | sort)"
    if [[ -z "$files" ]]; then
        skip "e2e node" "no test files in tests/e2e/node yet"
        return
    fi
    command -v node >/dev/null || { echo "  node missing: install Node.js 18+"; add "e2e node" 0 1; return; }
    if [[ -f tests/e2e/node/package.json && ! -d tests/e2e/node/node_modules ]]; then
        echo "  tests/e2e/node/node_modules missing: run scripts/deps.sh"
        add "e2e node" 0 1
        return
    fi
    need_services
    say "e2e node: node --test tests/e2e/node/"
    local log="$TMP/e2e-node.log" rc=0 p f c
    set +e
    timeout -k 10 "$T_LEVEL" node --test --test-reporter=tap tests/e2e/node/ 2>&1 | tee "$log"
    rc="${PIPESTATUS[0]}"
    set -e
    p="$(sed -n 's/^# pass \([0-9][0-9]*\)$/\1/p' "$log" | tail -n1)"
    f="$(sed -n 's/^# fail \([0-9][0-9]*\)$/\1/p' "$log" | tail -n1)"
    c="$(sed -n 's/^# cancelled \([0-9][0-9]*\)$/\1/p' "$log" | tail -n1)"
    p="${p:-0}"
    f=$((${f:-0} + ${c:-0}))
    if ((rc != 0 && f == 0)); then
        echo "  node --test exited $rc"
        f=1
    fi
    add "e2e node" "$p" "$f"
}

# tap_counts LOG: "PASSED FAILED" from node --test's TAP summary.
tap_counts() {
    local p f c
    p="$(sed -n 's/^# pass \([0-9][0-9]*\)$/\1/p' "$1" | tail -n1)"
    f="$(sed -n 's/^# fail \([0-9][0-9]*\)$/\1/p' "$1" | tail -n1)"
    c="$(sed -n 's/^# cancelled \([0-9][0-9]*\)$/\1/p' "$1" | tail -n1)"
    echo "${p:-0} $((${f:-0} + ${c:-0}))"
}

run_e2e_dashboard() {
    if [[ ! -f dashboard/package.json ]]; then
        skip "e2e dashboard" "dashboard/ does not exist yet"
        return
    fi
    command -v npm >/dev/null || { echo "  npm missing: install Node.js 18+"; add "e2e dashboard" 0 1; return; }
    say "e2e dashboard: build (scripts/dashboard.sh build)"
    if ! bash scripts/dashboard.sh build; then
        add "dashboard build" 0 1
        return
    fi
    local log="$TMP/vitest.log" rc=0 line p f
    say "e2e vitest: npx vitest run (dashboard/)"
    set +e
    (cd dashboard && timeout -k 10 "$T_LEVEL" npx vitest run 2>&1) | tee "$log"
    rc="${PIPESTATUS[0]}"
    set -e
    line="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^ *Tests +' | tail -n1 || true)"
    p="$(count passed "$line")"
    f="$(count failed "$line")"
    if ((rc != 0 && f == 0)); then
        echo "  vitest exited $rc"
        f=1
    fi
    add "e2e vitest" "$p" "$f"
    if [[ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]]; then
        echo "  chromium missing: run scripts/deps.sh (Debian package chromium)"
        add "e2e chromium" 0 1
        return
    fi
    say "e2e chromium: node --test tests/e2e/dashboard/"
    log="$TMP/chromium.log"
    set +e
    timeout -k 10 "$T_LEVEL" node --test --test-reporter=tap tests/e2e/dashboard/ 2>&1 | tee "$log"
    rc="${PIPESTATUS[0]}"
    set -e
    read -r p f < <(tap_counts "$log")
    if ((rc != 0 && f == 0)); then
        echo "  node --test exited $rc"
        f=1
    fi
    add "e2e chromium" "$p" "$f"
}

for level in "${levels[@]}"; do
    case "$level" in
        unit) run_unit ;;
        integration) run_integration ;;
        reliability) run_reliability ;;
        e2e) run_e2e_python; run_e2e_node; run_e2e_dashboard ;;
        all) run_unit; run_integration; run_reliability; run_e2e_python; run_e2e_node
             run_e2e_dashboard ;;
    esac
done

echo "$TOTAL_P passed, $TOTAL_F failed"
((TOTAL_F == 0)) || exit 1
