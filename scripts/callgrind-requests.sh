#!/usr/bin/env bash
# Instructions per request of the release proxy, counted by callgrind (repeatable to about
# 0.5 %, unlike CPU time on a shared VM): the proxy (one worker thread) in front of the bench
# responder, WARMUP requests, counters zeroed, COUNT requests over one keep-alive connection,
# counters dumped.
#
#   scripts/callgrind-requests.sh hit|pass|miss [COUNT] [WARMUP]
#   SERVER=haproxy|nginx scripts/callgrind-requests.sh …   # the same requests through a peer
#
# SERVER (default proxy) picks the server under callgrind: the proxy, or the peers of
# `scripts/bench.sh --parts peers` configured as there (HAProxy `cache`, nginx `proxy_cache`, one
# worker/thread each). CAPACITY_BYTES=N gives the proxy's store that capacity (a small one makes
# every miss evict an entry, as in a long run). CALLGRIND_OUT=FILE keeps the callgrind profile (for callgrind_annotate
# --inclusive=yes FILE). Only user-space instructions are counted: the kernel's socket work, the
# same for every server, is not in these figures.
#
# hit: GET /obj/<n % 100> (stored after the warm-up); pass: GET /nostore/<n % 100> (the front's
# pass-through once the warm-up taught the predictor); miss: GET /obj/<unique> (a fill each).
# Needs valgrind and python3; builds the release binaries if missing. Ports 18180/18181/18190.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/peer-configs.sh
. scripts/peer-configs.sh
kind=${1:?usage: scripts/callgrind-requests.sh hit|pass|miss [COUNT] [WARMUP]}
count=${2:-2000}
warmup=${3:-200}
case "$kind" in
  hit | pass | miss) ;;
  *) echo "unknown kind: $kind" >&2; exit 2 ;;
esac
server=${SERVER:-proxy}
case "$server" in
  proxy | haproxy | nginx) ;;
  *) echo "unknown SERVER: $server (proxy, haproxy, nginx)" >&2; exit 2 ;;
esac
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
[ "$server" = proxy ] || command -v "$server" >/dev/null || [ -x "/usr/sbin/$server" ] ||
  { echo "$server is needed (apt-get install $server)" >&2; exit 1; }
bin=target/release
[ -x "$bin/llmselect-proxy" ] && [ -x "$bin/llmselect-bench-responder" ] ||
  cargo build --release -p llmselect-proxy -p llmselect-bench --bins
work=$(mktemp -d)
cleanup() {
  [ -n "${proxy:-}" ] && kill -9 "$proxy" 2>/dev/null
  [ -n "${origin:-}" ] && kill "$origin" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
"$bin/llmselect-bench-responder" 127.0.0.1:18181 &
origin=$!
case "$server" in
proxy)
  proxy_peer_config 127.0.0.1:18180 127.0.0.1:18181 127.0.0.1:18190 callgrind >"$work/proxy.toml"
  set -- "$bin/llmselect-proxy" --config "$work/proxy.toml"
  ;;
haproxy)
  haproxy_peer_config 127.0.0.1:18180 127.0.0.1:18181 >"$work/haproxy.cfg"
  set -- "$(command -v haproxy || echo /usr/sbin/haproxy)" -db -f "$work/haproxy.cfg"
  ;;
nginx)
  n=$work/nginx
  mkdir -p "$n/cache"
  cat >"$n/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $n/nginx.pid;
error_log $n/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $n/client_body;
  proxy_temp_path $n/proxy_temp;
  fastcgi_temp_path $n/fastcgi_temp;
  uwsgi_temp_path $n/uwsgi_temp;
  scgi_temp_path $n/scgi_temp;
  proxy_cache_path $n/cache levels=1:2 keys_zone=bench:16m max_size=256m inactive=10m use_temp_path=off;
  upstream origin { server 127.0.0.1:18181; keepalive 64; }
  server {
    listen 127.0.0.1:18180;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache bench;
      proxy_cache_lock on;
      add_header X-Cache \$upstream_cache_status;
    }
  }
}
EOF
  set -- "$(command -v nginx || echo /usr/sbin/nginx)" -e "$n/error.log" -p "$n" -c "$n/nginx.conf"
  ;;
esac
valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" "$@" >"$work/server.log" 2>&1 &
proxy=$!
requests() { # N TAG: N requests of the kind over one connection
  python3 - "$1" "$2" "$kind" <<'EOF'
import http.client, sys
n, tag, kind = int(sys.argv[1]), sys.argv[2], sys.argv[3]
paths = {"hit": "/obj/{}", "pass": "/nostore/{}"}
c = http.client.HTTPConnection("127.0.0.1", 18180)
for i in range(n):
    c.request("GET", f"/obj/{tag}-{i}" if kind == "miss" else paths[kind].format(i % 100))
    r = c.getresponse()
    r.read()
    assert r.status == 200, r.status
EOF
}
for _ in $(seq 120); do
  curl -s -o /dev/null http://127.0.0.1:18180/obj/ready && break
  sleep 0.5
done
# callgrind_control is answered only while the process runs: keep it busy until it answers
control() {
  callgrind_control "$1" "$proxy" >/dev/null 2>&1 &
  local c=$!
  while kill -0 "$c" 2>/dev/null; do curl -s -o /dev/null http://127.0.0.1:18180/obj/wake; done
}
requests "$warmup" warm
control -z
requests "$count" "run$$"
control -d
sleep 1
total=$(grep -h '^summary:' "$work"/cg.*.* | tail -1 | awk '{print $2}')
[ -z "${CALLGRIND_OUT:-}" ] || cp "$(ls "$work"/cg.*.* | tail -1)" "$CALLGRIND_OUT"
echo "$server $kind: $total instructions for $count requests, $((total / count)) per request"
