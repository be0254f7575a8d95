#!/usr/bin/env bash
# Runs the whole system with demo data:
#   PostgreSQL (DATABASE_URL, or a private throwaway cluster) → migrations → demo users and data
#   → fake LLM provider (unless real provider keys are in the environment) → origin → proxy.
# Prints the URLs and ready-to-paste curl examples, then runs until Ctrl-C.
#
# --fleet: a private nats-server (JetStream), two origins and two proxies that balance over both
# origins and share invalidations through the bus; the examples rename through proxy A and read
# the fresh list through proxy B.
#
# LLMSELECT_UI_DIR=<the LLMSelect web app's build output>: the origin(s) also serve the web app
# (--static-dir), so the whole product runs through the proxy at http://$PROXY_ADDR/.
set -euo pipefail
cd "$(dirname "$0")/.."
FLEET=false
for arg in "$@"; do
  case "$arg" in
    --fleet) FLEET=true ;;
    *) echo "usage: scripts/demo.sh [--fleet]" >&2; exit 2 ;;
  esac
done

ORIGIN_ADDR=${ORIGIN_ADDR:-127.0.0.1:3044}
ORIGIN_OPS_ADDR=${ORIGIN_OPS_ADDR:-127.0.0.1:9464}
PROXY_ADDR=${PROXY_ADDR:-127.0.0.1:8080}
ADMIN_ADDR=${ADMIN_ADDR:-127.0.0.1:9090}
FAKE_LLM_ADDR=${FAKE_LLM_ADDR:-127.0.0.1:8090}
PROFILE=${PROFILE:-release}

log() { printf '\033[1m[demo]\033[0m %s\n' "$*" >&2; }

if ! command -v cmake >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  log "installing cmake (needed to build pingora's zlib-ng)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake build-essential >/dev/null
fi
if $FLEET && ! command -v nats-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  log "installing nats-server (the fleet's invalidation bus)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
fi

log "building ($PROFILE)"
if [ "$PROFILE" = release ]; then cargo build --release --locked --bins; BIN=target/release; else cargo build --locked --bins; BIN=target/debug; fi

. scripts/pg.sh
pg_ensure
DEMO_DB=${DEMO_DB:-llmselect_demo}
if [ -n "${PG_PRIVATE_DIR:-}" ]; then
  psql "$DATABASE_URL" -qAtc "CREATE DATABASE $DEMO_DB" >/dev/null
  export DATABASE_URL="${DATABASE_URL%/*}/$DEMO_DB"
fi

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg_stop_private
}
trap cleanup EXIT INT TERM

wait_http() { # url
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  log "timed out waiting for $1"; return 1
}

# Demo secrets: generated per run, never stored in the repo.
export JWT_SECRET_KEY=${JWT_SECRET_KEY:-$(head -c 32 /dev/urandom | base64 | tr -d '\n')}
export SECRET_KEY=${SECRET_KEY:-$(head -c 32 /dev/urandom | base64 | tr -d '\n')}
export ENCRYPTION_KEY=${ENCRYPTION_KEY:-$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n')}
export PROXY_ADMIN_TOKEN=${PROXY_ADMIN_TOKEN:-$(head -c 18 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n')}
export APP_ENV=demo

if [ -z "${OPENAI_API_KEY:-}${ANTHROPIC_API_KEY:-}${GEMINI_API_KEY:-}${GOOGLE_API_KEY:-}${MISTRAL_API_KEY:-}" ]; then
  log "no provider keys in the environment: starting the fake LLM provider on $FAKE_LLM_ADDR"
  "$BIN/llmselect-fake-llm" --listen "$FAKE_LLM_ADDR" & pids+=($!)
  export OPENAI_BASE_URL="http://$FAKE_LLM_ADDR/v1" MISTRAL_BASE_URL="http://$FAKE_LLM_ADDR/v1"
  export ANTHROPIC_BASE_URL="http://$FAKE_LLM_ADDR" GEMINI_BASE_URL="http://$FAKE_LLM_ADDR/v1beta"
  export OPENAI_API_KEY=fake-openai-key ANTHROPIC_API_KEY=fake-anthropic-key GEMINI_API_KEY=fake-gemini-key MISTRAL_API_KEY=fake-mistral-key
fi

ORIGIN=("$BIN/llmselect-origin" --config config/origin.toml)
# The web app, when LLMSELECT_UI_DIR names its build output (README: "Running the LLMSelect web
# app against the edge"); `serve` gets --static-dir.
UI_ARGS=()
UI_LINE="web app            none (set LLMSELECT_UI_DIR to a build of the LLMSelect front end)"
if [ -n "${LLMSELECT_UI_DIR:-}" ]; then
  if [ ! -f "$LLMSELECT_UI_DIR/index.html" ]; then
    log "LLMSELECT_UI_DIR=$LLMSELECT_UI_DIR holds no index.html: build the front end first (npm run build)"
    exit 2
  fi
  UI_DIR=$(cd "$LLMSELECT_UI_DIR" && pwd)
  UI_ARGS=(--static-dir "$UI_DIR")
  UI_LINE="web app            http://$PROXY_ADDR/   (from $UI_DIR)"
  log "the origin serves the web app from $UI_DIR"
fi
log "migrating and seeding demo data"
"${ORIGIN[@]}" migrate
"${ORIGIN[@]}" seed --demo
run_single() {
log "starting the origin on $ORIGIN_ADDR"
"${ORIGIN[@]}" serve --listen "$ORIGIN_ADDR" --metrics-listen "$ORIGIN_OPS_ADDR" ${UI_ARGS[@]+"${UI_ARGS[@]}"} & pids+=($!)
wait_http "http://$ORIGIN_ADDR/health"
log "starting the proxy on $PROXY_ADDR (admin $ADMIN_ADDR)"
"$BIN/llmselect-proxy" --config config/proxy.toml --listen "$PROXY_ADDR" --upstream "http://$ORIGIN_ADDR" --admin-listen "$ADMIN_ADDR" & pids+=($!)
wait_http "http://$PROXY_ADDR/health"

TOKEN=$("${ORIGIN[@]}" token --username alice)
P="http://$PROXY_ADDR"
cat <<MSG

  LLMSelect edge is running.
    proxy  (use this)   $P
    origin (direct)     http://$ORIGIN_ADDR      health: http://$ORIGIN_ADDR/health (readiness only)
    origin operations   http://$ORIGIN_OPS_ADDR       health: http://$ORIGIN_OPS_ADDR/health   metrics: http://$ORIGIN_OPS_ADDR/metrics
    proxy admin console http://$ADMIN_ADDR/      token: $PROXY_ADMIN_TOKEN
    $UI_LINE
    database            $DATABASE_URL
  Demo users: alice / demo-password-123 (admin), bob / demo-password-123

  export TOKEN=$TOKEN
  # the model registry (public, cached): run twice, watch X-Cache go MISS -> HIT
  curl -si $P/api/v1/models | grep -iE '^(x-cache|age|cache-status|x-response-time)'
  # alice's conversations (per-user, cached per credential)
  curl -s -H "Authorization: Bearer \$TOKEN" "$P/api/v1/conversations?page=1&limit=20"
  curl -si -H "Authorization: Bearer \$TOKEN" "$P/api/v1/conversations?page=1&limit=20" | grep -i '^x-cache'
  # rename the first one through the proxy, then list again: MISS with the new title
  ID=\$(curl -s -H "Authorization: Bearer \$TOKEN" "$P/api/v1/conversations?limit=1" | sed -E 's/.*"id":"([^"]+)".*/\1/')
  curl -s -X PATCH -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' -d '{"title":"Renamed"}' $P/api/v1/conversations/\$ID
  curl -si -H "Authorization: Bearer \$TOKEN" "$P/api/v1/conversations?page=1&limit=20" | grep -iE '^x-cache|Renamed'
  # chat (streams tokens through the proxy; uses the fake provider unless you exported real keys)
  curl -N -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
       -d '{"provider":"openai","model":"gpt-4o","messages":[{"role":"user","content":"Hello!"}]}' $P/api/v1/chat/stream
  # compare two models side by side
  curl -s -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
       -d '{"providers":[{"provider":"openai","model":"gpt-4o"},{"provider":"anthropic","model":"claude-haiku-4-5-20251001"}],"prompt":"Hi"}' $P/api/v1/compare
  # proxy admin: open http://$ADMIN_ADDR/ in a browser (paste the token once) to watch the hit
  # ratio move while you run the commands above, purge from the form and explain a URL; or:
  curl -s -H "Authorization: Bearer $PROXY_ADMIN_TOKEN" http://$ADMIN_ADDR/stats
  curl -s -X POST -H "Authorization: Bearer $PROXY_ADMIN_TOKEN" -d '{"groups":["models"]}' http://$ADMIN_ADDR/purge
  curl -s -H "Authorization: Bearer $PROXY_ADMIN_TOKEN" "http://$ADMIN_ADDR/explain?url=/api/v1/models"
  PROXY_ADMIN_TOKEN=$PROXY_ADMIN_TOKEN $BIN/llmselect-proxy stats --admin http://$ADMIN_ADDR

  Press Ctrl-C to stop everything.
MSG
wait
}

# --fleet: nats-server, two origins, two proxies on one invalidation stream.
run_fleet() {
  local ORIGIN_B_ADDR=${ORIGIN_B_ADDR:-127.0.0.1:3045} ORIGIN_B_OPS_ADDR=${ORIGIN_B_OPS_ADDR:-127.0.0.1:9465}
  local PROXY_B_ADDR=${PROXY_B_ADDR:-127.0.0.1:8081} ADMIN_B_ADDR=${ADMIN_B_ADDR:-127.0.0.1:9091}
  local nats_port=${NATS_PORT:-4333} nats_dir
  nats_dir=$(mktemp -d)
  log "starting nats-server with JetStream on 127.0.0.1:$nats_port"
  nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$nats_dir" >/dev/null 2>&1 & pids+=($!)
  export NATS_URL="nats://127.0.0.1:$nats_port"
  for _ in $(seq 1 100); do (: <"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break; sleep 0.1; done
  log "starting origins on $ORIGIN_ADDR and $ORIGIN_B_ADDR"
  "${ORIGIN[@]}" serve --listen "$ORIGIN_ADDR" --metrics-listen "$ORIGIN_OPS_ADDR" ${UI_ARGS[@]+"${UI_ARGS[@]}"} & pids+=($!)
  "${ORIGIN[@]}" serve --listen "$ORIGIN_B_ADDR" --metrics-listen "$ORIGIN_B_OPS_ADDR" ${UI_ARGS[@]+"${UI_ARGS[@]}"} & pids+=($!)
  wait_http "http://$ORIGIN_ADDR/health"; wait_http "http://$ORIGIN_B_ADDR/health"
  local ups="http://$ORIGIN_ADDR,http://$ORIGIN_B_ADDR"
  log "starting proxy A on $PROXY_ADDR (admin $ADMIN_ADDR) and proxy B on $PROXY_B_ADDR (admin $ADMIN_B_ADDR)"
  "$BIN/llmselect-proxy" --config config/proxy.toml --listen "$PROXY_ADDR" --upstream "$ups" --admin-listen "$ADMIN_ADDR" & pids+=($!)
  "$BIN/llmselect-proxy" --config config/proxy.toml --listen "$PROXY_B_ADDR" --upstream "$ups" --admin-listen "$ADMIN_B_ADDR" & pids+=($!)
  wait_http "http://$PROXY_ADDR/health"; wait_http "http://$PROXY_B_ADDR/health"
  local TOKEN A="http://$PROXY_ADDR" B="http://$PROXY_B_ADDR" H="Authorization: Bearer $PROXY_ADMIN_TOKEN"
  local L="/api/v1/conversations?page=1&limit=20"
  TOKEN=$("${ORIGIN[@]}" token --username alice)
  cat <<MSG

  LLMSelect edge fleet is running: 2 proxies, 2 origins, 1 invalidation stream.
    proxy A      $A      admin http://$ADMIN_ADDR
    proxy B      $B      admin http://$ADMIN_B_ADDR     admin token: $PROXY_ADMIN_TOKEN
    origins      http://$ORIGIN_ADDR  http://$ORIGIN_B_ADDR (both behind each proxy, health-checked)
    bus          $NATS_URL (stream EDGE_INVALIDATIONS)
    $UI_LINE
  Demo users: alice / demo-password-123 (admin), bob / demo-password-123

  export TOKEN=$TOKEN
  # warm alice's list on both nodes: the second read on each is a HIT
  for P in $A $B; do curl -s -o /dev/null -H "Authorization: Bearer \$TOKEN" "\$P$L"; curl -si -H "Authorization: Bearer \$TOKEN" "\$P$L" | grep -i '^x-cache'; done
  # rename the first conversation through proxy A; its response names its outbox position
  ID=\$(curl -s -H "Authorization: Bearer \$TOKEN" "$A/api/v1/conversations?limit=1" | sed -E 's/.*"id":"([^"]+)".*/\1/')
  POS=\$(curl -si -X PATCH -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' -d '{"title":"Renamed on A"}' $A/api/v1/conversations/\$ID | sed -nE 's/^llmselect-invalidation-id: *([0-9]+).*/\1/Ip')
  # read your write through proxy B right away (echo the position; browsers get it as a cookie)
  curl -si -H "Authorization: Bearer \$TOKEN" -H "LLMSelect-Invalidation-Id: \$POS" "$B$L" | grep -oiE '^x-cache.*|Renamed on A'
  # any client through B a few milliseconds later: the bus has delivered the invalidation
  sleep 0.2; curl -si -H "Authorization: Bearer \$TOKEN" "$B$L" | grep -oiE '^x-cache.*|Renamed on A'
  # each node's position in the stream
  curl -s -H "$H" http://$ADMIN_ADDR/stats; echo; curl -s -H "$H" http://$ADMIN_B_ADDR/stats; echo
  # an admin purge on A reaches B (the answer names its stream sequence)
  curl -s -X POST -H "$H" -d '{"groups":["models"]}' http://$ADMIN_ADDR/purge

  Press Ctrl-C to stop everything.
MSG
  wait
}

if $FLEET; then run_fleet; else run_single; fi
