# shellcheck shell=bash
# Sourced by demo.sh, test.sh and bench.sh: makes sure a PostgreSQL server is reachable through
# DATABASE_URL. If DATABASE_URL is already set it is used as is. Otherwise a private, throwaway
# cluster is created from the installed PostgreSQL binaries (installed with apt-get when missing
# and running as root), listening on a free loopback port, and removed again on exit.

pg_log() { printf '[pg] %s\n' "$*" >&2; }

pg_bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
    return
  fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

pg_install_if_missing() {
  [ -n "$(pg_bindir)" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    pg_log "PostgreSQL server binaries not found: installing them with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  [ -n "$(pg_bindir)" ] || { pg_log "no PostgreSQL server binaries (initdb) found; install PostgreSQL or set DATABASE_URL"; return 1; }
}

# A TCP port on 127.0.0.1 that nothing listens on right now.
pg_free_port() {
  local p
  for p in $(seq "${1:-55432}" 65000); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  return 1
}

# As root, clusters run as the `postgres` system user (created when missing).
pg_owner_ready() {
  if [ "$(id -u)" = 0 ]; then
    id -u postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  fi
}

# Run a command as the cluster owner: initdb and postgres refuse to run as root.
pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$PG_OWNER" -- "$@"; else "$@"; fi
}

pg_stop_private() {
  if [ -n "${PG_PRIVATE_DIR:-}" ] && [ -d "$PG_PRIVATE_DIR" ]; then
    pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_PRIVATE_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_PRIVATE_DIR"
    pg_log "private cluster stopped and removed"
  fi
}

# Sets DATABASE_URL (admin URL to the `postgres` database) and registers cleanup on EXIT.
pg_ensure() {
  if [ -n "${DATABASE_URL:-}" ]; then
    pg_log "using DATABASE_URL from the environment"
    return 0
  fi
  pg_install_if_missing || return 1
  PG_BIN=$(pg_bindir)
  pg_owner_ready
  PG_OWNER=$(id -un)
  [ "$(id -u)" = 0 ] && PG_OWNER=postgres
  PG_PRIVATE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/llmselect-pg.XXXXXX")
  chmod 755 "$PG_PRIVATE_DIR"
  [ "$(id -u)" = 0 ] && chown "$PG_OWNER" "$PG_PRIVATE_DIR"
  local port
  port=$(pg_free_port "${PG_PORT:-55432}")
  pg_log "starting a private PostgreSQL cluster ($PG_BIN) on 127.0.0.1:$port in $PG_PRIVATE_DIR"
  pg_as_owner "$PG_BIN/initdb" -D "$PG_PRIVATE_DIR/data" -U postgres -A trust -E UTF8 --no-locale >"$PG_PRIVATE_DIR/initdb.log" 2>&1 \
    || { cat "$PG_PRIVATE_DIR/initdb.log" >&2; return 1; }
  pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_PRIVATE_DIR/data" -l "$PG_PRIVATE_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_PRIVATE_DIR -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=256MB" \
    start >/dev/null || { cat "$PG_PRIVATE_DIR/server.log" >&2; return 1; }
  trap pg_stop_private EXIT
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  export PG_PRIVATE_DIR PG_BIN PG_OWNER
}
