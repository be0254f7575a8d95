#!/usr/bin/env bash
# Runs every test of the workspace (unit tests and the end-to-end tests that start PostgreSQL,
# the origin, the proxy and the fake LLM provider on loopback ports).
# Uses DATABASE_URL when set; otherwise starts a private throwaway PostgreSQL cluster.
# The fleet and outbox tests start their own private nats-server (JetStream) per test: only the
# binary is needed (installed with apt-get when missing and running as root); none is started here.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh
pg_ensure

if ! command -v nats-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[nats] nats-server not found: installing it with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
  fi
  command -v nats-server >/dev/null 2>&1 || {
    echo "[nats] no nats-server found; install it (Debian package nats-server)" >&2
    exit 1
  }
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --no-fail-fast "$@"
else
  cargo test --workspace --all-targets --no-fail-fast "$@"
fi
