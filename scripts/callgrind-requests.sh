#!/usr/bin/env bash
# Instructions per request of the release proxy, counted by callgrind (repeatable to about
# 0.5 %, unlike CPU time on a shared VM): the proxy (one worker thread) in front of the bench
# responder, WARMUP requests, counters zeroed, COUNT requests over one keep-alive connection,
# counters dumped.
#
#   scripts/callgrind-requests.sh hit|pass|miss [COUNT] [WARMUP]
#
# hit: GET /obj/<n % 100> (stored after the warm-up); pass: GET /nostore/<n % 100> (the front's
# pass-through once the warm-up taught the predictor); miss: GET /obj/<unique> (a fill each).
# Needs valgrind and python3; builds the release binaries if missing. Ports 18180/18181/18190.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:?usage: scripts/callgrind-requests.sh hit|pass|miss [COUNT] [WARMUP]}
count=${2:-2000}
warmup=${3:-200}
case "$kind" in
  hit | pass | miss) ;;
  *) echo "unknown kind: $kind" >&2; exit 2 ;;
esac
command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
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
cat >"$work/proxy.toml" <<EOF
listen = "127.0.0.1:18180"
upstream = "http://127.0.0.1:18181"
admin_listen = "127.0.0.1:18190"
admin_token = "callgrind"
log_level = "warn"
[server]
threads = 1
EOF
"$bin/llmselect-bench-responder" 127.0.0.1:18181 &
origin=$!
valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" \
  "$bin/llmselect-proxy" --config "$work/proxy.toml" >"$work/proxy.log" 2>&1 &
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
echo "$kind: $total instructions for $count requests, $((total / count)) per request"
