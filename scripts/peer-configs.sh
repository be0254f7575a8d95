# shellcheck shell=bash
# Server configurations of the by-hand measurement scripts (callgrind-requests.sh,
# request-cpu.sh), which source this file. Each writes to stdout.

# proxy_peer_config LISTEN ORIGIN ADMIN TOKEN: the proxy with one worker thread, listening on
# LISTEN in front of ORIGIN (host:port), its admin port on ADMIN. CAPACITY_BYTES in the
# environment sizes its store (with a small one every miss evicts an entry).
proxy_peer_config() {
  cat <<CFG
listen = "$1"
upstream = "http://$2"
admin_listen = "$3"
admin_token = "$4"
log_level = "warn"
[server]
threads = 1
CFG
  if [ -n "${CAPACITY_BYTES:-}" ]; then
    printf '[cache]\ncapacity_bytes = %d\nmax_object_bytes = %d\n' \
      "$CAPACITY_BYTES" $((CAPACITY_BYTES / 32))
  fi
}

# haproxy_peer_config LISTEN ORIGIN: the HAProxy 2.6 `cache` configuration of the peer comparison
# (`scripts/bench.sh --parts peers`, configured in bench/src/procs.rs) with one thread, listening
# on LISTEN and caching ORIGIN (host:port).
haproxy_peer_config() {
  cat <<CFG
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  http-reuse always
cache bench
  total-max-size 256
  max-object-size 1048576
  max-age 3600
frontend fe
  bind $1
  default_backend origin
backend origin
  http-request cache-use bench
  http-response cache-store bench
  server o $2 maxconn 64
CFG
}
