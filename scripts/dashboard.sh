#!/usr/bin/env bash
# Build the dashboard (dashboard/dist) that the gateway serves.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
    cat <<'USAGE'
usage: scripts/dashboard.sh build [--help]      (make dashboard)

Builds dashboard/dist from dashboard/ (Vite + React + TypeScript):
  1. npm ci in dashboard/ when dashboard/node_modules is missing or older
     than package-lock.json (the npm registry is needed only then),
  2. npm run build (tsc --noEmit, then vite build) when a source file is
     newer than dashboard/dist/index.html, or dist is missing.
The gateway serves the result without Node (dashboard: in relay.yaml;
docs/dashboard.md). For development: cd dashboard && npm run dev.
USAGE
}

case "${1:-build}" in
    -h|--help) usage; exit 0 ;;
    build) ;;
    *) usage >&2; die "unknown argument '$1'" ;;
esac

cd "$ROOT/dashboard"
command -v npm >/dev/null || die "npm not found: install Node.js 18+ (apt-get install nodejs npm)"
if [[ ! -d node_modules || package-lock.json -nt node_modules ]]; then
    say "dashboard: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
    touch node_modules
fi
if [[ -f dist/index.html ]] && [[ -z "$(find src index.html vite.config.ts package.json -newer dist/index.html -print -quit)" ]]; then
    say "dashboard: dist/ is up to date"
    exit 0
fi
say "dashboard: npm run build"
npm run build --silent >/dev/null || { npm run build; die "the dashboard build failed (above)"; }
say "dashboard: built dashboard/dist"
