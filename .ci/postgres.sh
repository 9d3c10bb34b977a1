#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the catalogue tests and print its SQLAlchemy URL.
# Usage: export OIFLOW_TEST_POSTGRES_URL=$(.ci/postgres.sh)    (installs Debian's postgresql if absent)
# The server runs as the 'postgres' user from a data directory under ${PGBASE:-/tmp/oiflow-pg},
# listening on 127.0.0.1:${PGPORT:-55432} with trust authentication (local tests only).
set -euo pipefail
# stdout carries only the lines the caller evaluates (below the block); every command's own output
# (apt, pg_ctlcluster's "Removed stale pid file.", OAR's tools) goes to stderr
{
PGBASE=${PGBASE:-/tmp/oiflow-pg}
PGPORT=${PGPORT:-55432}
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
fi
BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$PGBASE"
[ "$(id -u)" = 0 ] && chown postgres "$PGBASE"
if [ ! -f "$PGBASE/data/PG_VERSION" ]; then
  as_pg "$BIN/initdb" -D "$PGBASE/data" -U postgres -A trust >/dev/null
fi
if ! as_pg "$BIN/pg_ctl" -D "$PGBASE/data" status >/dev/null 2>&1; then
  as_pg "$BIN/pg_ctl" -D "$PGBASE/data" -l "$PGBASE/log" -w \
    -o "-p $PGPORT -k $PGBASE -c listen_addresses=127.0.0.1" start >/dev/null
fi
as_pg "$BIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='oiflow_test'" \
  | grep -q 1 || as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres oiflow_test
} >&2
echo "postgresql+psycopg2://postgres@127.0.0.1:$PGPORT/oiflow_test"
