#!/usr/bin/env bash
# Style checks (make check): banned functions, file and function length.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

case "${1:-}" in
    -h|--help)
        cat <<'USAGE'
usage: scripts/check.sh [DIR ...]        (make check)

Checks the C sources in src/ and tools/ (or the DIRs given) and exits 1,
naming file:line, on: banned functions (strcpy strcat sprintf vsprintf gets
atoi atol strtok: use snprintf, strtol, memcpy with sizes, strtok_r), C
files over 1000 lines, functions over 80 lines. Prints the 10 longest
functions with their branch counts. The checks live in scripts/check.py.
USAGE
        exit 0 ;;
esac

cd "$ROOT"
say "checking C sources"
exec python3 scripts/check.py "$@"
