#!/usr/bin/env bash
# The benchmark suite, the one documented command behind the README's performance figures:
#
#   scripts/bench.sh            # full run: 10k users, 100k conversations, 1M messages (~6 min)
#   scripts/bench.sh --quick    # smoke run on a tiny dataset (well under a minute after the build)
#   scripts/bench.sh --parts peers --peer-workers 2 --unpinned   # the peers' scaling comparison
#
# Builds the release binaries once, makes sure PostgreSQL is reachable (DATABASE_URL, else a
# private throwaway cluster from scripts/pg.sh), then llmselect-bench creates its own database,
# seeds it with `llmselect-origin seed`, starts the origin, the proxy and nginx (proxy_cache) on
# loopback ports and measures; the peers part puts the proxy, nginx and HAProxy (its `cache`
# section) in front of a tiny in-memory origin (llmselect-bench-responder) and reports server CPU
# µs per request from /proc/<pid>/stat next to req/s; the fleet part then starts a private nats-server (JetStream, its
# own port and store), two origins and three proxies on one invalidation stream. Servers are pinned to the first CPU(s) and the load generator to
# the others with taskset when the machine has at least two. Any further arguments go to
# llmselect-bench (see `target/release/llmselect-bench --help`), e.g. --messages 200000.
# Results: bench/results/latest.md and bench/results/latest.json.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/pg.sh
. scripts/pg.sh

log() { printf '[bench] %s\n' "$*" >&2; }

# ensure_server CMD WHAT: installs Debian package CMD with apt-get when missing (as root).
ensure_server() {
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$1" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      log "$1 ($2) not found: installing it with apt-get"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
    else
      log "$1 not found; install it (Debian package $1, $2)"
      exit 1
    fi
  fi
}
ensure_server nginx "the reference cache of the HTTP comparison"
NGINX_BIN=$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)
# The second peer: HAProxy's `cache` section (the peers part).
ensure_server haproxy "the second reference cache, peers part"
HAPROXY_BIN=$(command -v haproxy 2>/dev/null || echo /usr/sbin/haproxy)

# The fleet part's bus: a private nats-server per run (never the system one). Needed unless
# --parts leaves the fleet out.
wants_fleet=1
prev=
for a in "$@"; do
  case "$a" in
    --parts=*) case "${a#--parts=}" in *fleet*) ;; *) wants_fleet=0 ;; esac ;;
  esac
  if [ "$prev" = --parts ]; then
    case "$a" in *fleet*) ;; *) wants_fleet=0 ;; esac
  fi
  prev=$a
done
nats_args=()
if [ "$wants_fleet" = 1 ] && ! command -v nats-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "nats-server (the fleet's bus) not found: installing it with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
  else
    log "nats-server not found; install it (Debian package nats-server) or leave out the fleet part (--parts)"
    exit 1
  fi
fi
if command -v nats-server >/dev/null 2>&1; then
  nats_args=(--nats-server "$(command -v nats-server)")
fi

log "building release binaries"
cargo build --release -p llmselect-origin -p llmselect-proxy -p llmselect-bench

pg_ensure

# One connection per socket: the stampede opens 1,000 at once.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

bench_command="scripts/bench.sh${*:+ $*}"
# --unpinned: servers and load generator share every CPU (the scaling comparison of the peers
# part, with --peer-workers N); the flag is this script's, not passed on.
unpinned=0
args=()
for a in "$@"; do
  if [ "$a" = --unpinned ]; then unpinned=1; else args+=("$a"); fi
done
set -- ${args[@]+"${args[@]}"}
pin_server=()
pin_client=()
cpus=$(nproc)
if [ "$unpinned" = 1 ]; then
  log "--unpinned: servers and load generator share all $cpus CPU(s)"
elif command -v taskset >/dev/null 2>&1 && [ "$cpus" -ge 2 ]; then
  half=$((cpus / 2))
  cpu_range() { if [ "$1" = "$2" ]; then echo "$1"; else echo "$1-$2"; fi; }
  server_cpus=$(cpu_range 0 $((half - 1)))
  client_cpus=$(cpu_range "$half" $((cpus - 1)))
  pin_server=(--server-cpus "$server_cpus" --proxy-threads "$half")
  pin_client=(taskset -c "$client_cpus")
  log "servers on CPU(s) $server_cpus, load generator on CPU(s) $client_cpus"
else
  log "fewer than two CPUs or no taskset: running unpinned"
fi

BENCH_COMMAND="$bench_command" "${pin_client[@]}" "${CARGO_TARGET_DIR:-target}/release/llmselect-bench" \
  --nginx "$NGINX_BIN" --haproxy "$HAPROXY_BIN" "${nats_args[@]}" "${pin_server[@]}" "$@"
