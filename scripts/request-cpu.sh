#!/usr/bin/env bash
# CPU per request of servers run in turn, by hand: each run starts a fresh server (one worker
# thread) and the bench responder, both pinned to CPU 0, warms up, then loads it from CPU 1 with
# `llmselect-bench-load` (64 connections) and prints req/s, the server's user and system CPU per
# request and the origin's (from /proc/<pid>/stat), context switches per request (all threads),
# the server's minor page faults per request
# and the server's RSS. Rounds alternate the servers, so a drifting VM affects them alike.
#
#   scripts/request-cpu.sh hit|pass|miss SERVER...
#
# SERVER: `proxy` (target/release/llmselect-proxy), `haproxy` (its `cache`, configured as in
# `scripts/bench.sh --parts peers`), or the path of another proxy binary (an older build, to
# compare). Environment: ROUNDS (3), SECONDS_PER_RUN (5), WARM (seconds of warm-up, 2),
# CAPACITY_BYTES (the proxy's store; with a small one every miss evicts). Anything else in the
# environment reaches the proxy too (e.g. MIMALLOC_PURGE_DELAY). hit: /obj/<n % 100>; pass:
# /nostore/<n % 100>; miss: a new /obj/ path per request. Ports 18280/18281/18290.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/peer-configs.sh
. scripts/peer-configs.sh
kind=${1:?usage: scripts/request-cpu.sh hit|pass|miss SERVER...}
shift
[ $# -gt 0 ] || { echo "name at least one SERVER (proxy, haproxy, a proxy binary)" >&2; exit 2; }
case "$kind" in
  hit) prefix=/obj/ mode= ;;
  pass) prefix=/nostore/ mode= ;;
  miss) prefix=/obj/m- mode=unique ;;
  *) echo "unknown kind: $kind" >&2; exit 2 ;;
esac
bin=target/release
[ -x "$bin/llmselect-proxy" ] && [ -x "$bin/llmselect-bench-load" ] ||
  cargo build --release -p llmselect-proxy -p llmselect-bench --bins
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

proxy_peer_config 127.0.0.1:18280 127.0.0.1:18281 127.0.0.1:18290 request-cpu >"$work/proxy.toml"
haproxy_peer_config 127.0.0.1:18280 127.0.0.1:18281 >"$work/haproxy.cfg"

# user and system CPU ticks, minor page faults
ticks() { awk '{print $14, $15, $10}' "/proc/$1/stat"; }
switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }

run() { # SERVER
  taskset -c 0 "$bin/llmselect-bench-responder" 127.0.0.1:18281 &
  local origin=$!
  case "$1" in
    haproxy) taskset -c 0 "$(command -v haproxy || echo /usr/sbin/haproxy)" -db -f "$work/haproxy.cfg" & ;;
    proxy) taskset -c 0 "$bin/llmselect-proxy" --config "$work/proxy.toml" 2>/dev/null & ;;
    *) taskset -c 0 "$1" --config "$work/proxy.toml" 2>/dev/null & ;;
  esac
  local server=$!
  pids=("$origin" "$server")
  for _ in $(seq 100); do
    curl -s -o /dev/null http://127.0.0.1:18280/obj/1 && break
    sleep 0.1
  done
  taskset -c 1 "$bin/llmselect-bench-load" 127.0.0.1:18280 "$prefix" 64 "${WARM:-2}" $mode >/dev/null
  local s0 o0 c0 d0 s1 o1 c1 d1 out
  s0=$(ticks "$server"); o0=$(ticks "$origin"); c0=$(switches "$server")
  out=$(taskset -c 1 "$bin/llmselect-bench-load" 127.0.0.1:18280 "$prefix" 64 "${SECONDS_PER_RUN:-5}" $mode)
  s1=$(ticks "$server"); o1=$(ticks "$origin"); c1=$(switches "$server")
  local rss
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$server/status")
  kill "$server" "$origin"
  wait "$server" "$origin" 2>/dev/null || true
  python3 - "$1" "$out" "$s0" "$s1" "$o0" "$o1" "$c0" "$c1" "$rss" "$(getconf CLK_TCK)" <<'EOF'
import re, sys
name, out, s0, s1, o0, o1, c0, c1, rss, hz = sys.argv[1:]
rps = float(out.split()[0])
n = int(re.search(r"(\d+) requests", out).group(1))
per = lambda a, b: (int(b) - int(a)) / int(hz) / n * 1e6
(su0, ss0, sf0), (su1, ss1, sf1) = s0.split(), s1.split()
(ou0, os0, _), (ou1, os1, _) = o0.split(), o1.split()
print(f"{name[-24:]:>24}  {rps:8.0f} req/s  server {per(su0, su1) + per(ss0, ss1):5.1f} µs/req "
      f"(user {per(su0, su1):4.1f}, sys {per(ss0, ss1):4.1f})  origin "
      f"{per(ou0, ou1) + per(os0, os1):4.1f} µs/req  switches {(int(c1) - int(c0)) / n:.2f}/req  "
      f"faults {(int(sf1) - int(sf0)) / n:.3f}/req  rss {int(rss) / 1024:.0f} MiB")
EOF
}

for round in $(seq "${ROUNDS:-3}"); do
  echo "round $round ($kind)"
  for server in "$@"; do run "$server"; done
done
