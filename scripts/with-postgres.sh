#!/usr/bin/env bash
# Runs a command against a throw-away PostgreSQL server on loopback: Debian's postgresql package (installed
# when missing), initdb into a temporary directory as the unprivileged `postgres` user, a free port, and the
# server stopped and its directory removed whatever happens. The command sees PG_URI, e.g.
#   scripts/with-postgres.sh sh -c 'RELAY_BRIDGE_TEST_DATABASE_URI=$PG_URI npm test'
# Extra server settings can be given in PG_EXTRA_OPTS (e.g. "-c fsync=off"); the default keeps fsync on. The
# server's log is at PG_LOG (e.g. for slow statements with "-c log_min_duration_statement=20").
set -euo pipefail
if [ "$#" -eq 0 ]; then
  echo "usage: $0 command [args...]" >&2
  exit 2
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
PGUSER_OS=postgres
if [ "$(id -u)" = 0 ]; then
  id "$PGUSER_OS" >/dev/null 2>&1 || useradd --system --no-create-home "$PGUSER_OS"
fi
PGDATA="$(mktemp -d /tmp/relay-bridge-pg.XXXXXX)"
[ "$(id -u)" = 0 ] && chown "$PGUSER_OS" "$PGDATA"
PGPORT="$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u "$PGUSER_OS" -- "$@"; else "$@"; fi; }
stop_pg() { as_pg "$PGBIN/pg_ctl" -D "$PGDATA/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$PGDATA"; }
trap stop_pg EXIT
as_pg "$PGBIN/initdb" -D "$PGDATA/data" -U postgres -A trust >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDATA/data" -l "$PGDATA/log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDATA -c max_connections=300 -c fsync=on ${PG_EXTRA_OPTS:-}" start >/dev/null
export PG_URI="postgres://postgres@127.0.0.1:$PGPORT/postgres"
export PG_LOG="$PGDATA/log"
export PG_VERSION="$("$PGBIN/postgres" --version | awk '{print $3}')"
echo "PostgreSQL $PG_VERSION on port $PGPORT" >&2
"$@"
