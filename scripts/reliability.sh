#!/usr/bin/env bash
# The fault-injection suite (issue 16), one command:
#
#   scripts/reliability.sh            # full run: 2,000 slow clients, 32 MiB store churned 4x (~3 min)
#   scripts/reliability.sh --quick    # smoke run (well under a minute after the build)
#
# Builds the release proxy and llmselect-reliability, raises this shell's open-file limit (the
# slow-client scenario holds thousands of sockets), then runs every scenario against the release
# proxy as a child process in front of a small in-process fault origin: slow clients (trickled
# headers) with everybody else's latency, slow clients under `ulimit -n 1024`, the origin hung /
# killed / restarted (misses and stale-if-error), memory under churn with small and large
# objects, pipelining, SIGTERM (idle, while starting, under load) and SIGKILL under load, and the
# metrics against /stats; and PostgreSQL restarted and stopped under write load (`postgres`: the
# origin in-process on a private PostgreSQL server created from the installed binaries, every
# acknowledged write checked in the database afterwards). Any further arguments go to
# llmselect-reliability (`--help`; `--only postgres,memory,...` runs some scenarios and keeps the
# other rows of the previous report). Results: bench/results/reliability/latest.md and latest.json.
#
# The CI form of these checks is the `reliability` module of the proxy end-to-end suite
# (tests/tests/proxy/reliability.rs) and the origin suite's db_faults.rs, run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[reliability] %s\n' "$*" >&2; }

# The postgres scenario creates its own server from the installed binaries.
# shellcheck source=scripts/pg.sh
. scripts/pg.sh
{ pg_install_if_missing && pg_owner_ready; } || log "no PostgreSQL server binaries: the postgres scenario will fail"

log "building release binaries"
cargo build --release --locked -p llmselect-proxy -p llmselect-bench --bin llmselect-proxy --bin llmselect-reliability

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

target_dir=${CARGO_TARGET_DIR:-target}
exec "$target_dir/release/llmselect-reliability" --bin-dir "$target_dir/release" "$@"
