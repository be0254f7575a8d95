#!/usr/bin/env bash
# Runs every test of the workspace (unit tests and the end-to-end tests that start PostgreSQL,
# the origin, the proxy and the fake LLM provider on loopback ports).
# Uses DATABASE_URL when set; otherwise starts a private throwaway PostgreSQL cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/pg.sh
pg_ensure

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --no-fail-fast "$@"
else
  cargo test --workspace --all-targets --no-fail-fast "$@"
fi
