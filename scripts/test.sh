#!/usr/bin/env bash
# Runs every test of the workspace (unit tests and the end-to-end tests that start PostgreSQL,
# the origin, the proxy and the fake LLM provider on loopback ports).
# Uses DATABASE_URL when set; otherwise starts a private throwaway PostgreSQL cluster.
# The fleet and outbox tests start their own private nats-server (JetStream) per test, the console
# test a headless chromium through chromedriver, the ops kit test promtool: only the binaries are
# needed (installed with apt-get when missing and running as root); none is started here.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh
pg_ensure
# The PostgreSQL fault test (origin suite, db_faults.rs) starts and stops a server of its own from
# the installed binaries, even when DATABASE_URL points at a server elsewhere.
pg_install_if_missing
pg_owner_ready

# Binaries the end-to-end tests start: nats-server (fleet and outbox tests), chromium and
# chromedriver (the admin console's browser test), promtool (the ops/ kit's checks).
need_pkg() { # command package
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[deps] $1 not found: installing $2 with apt-get" >&2
    [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq; APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  fi
  command -v "$1" >/dev/null 2>&1 || {
    echo "[deps] no $1 found; install it (Debian package $2)" >&2
    exit 1
  }
}
need_pkg nats-server nats-server
need_pkg chromium chromium
need_pkg chromedriver chromium-driver
need_pkg promtool prometheus

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --no-fail-fast "$@"
else
  cargo test --workspace --all-targets --no-fail-fast "$@"
fi
