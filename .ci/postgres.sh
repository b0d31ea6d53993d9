#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on a free loopback port for the shared-study test
# (comptk tune --storage postgresql://...). Sourced by .ci/run: it exports COMPTK_TEST_POSTGRES
# and registers a trap that stops the server and removes its folder when the caller exits.
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    $SUDO apt-get update -qq && $SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
PGROOT="$(mktemp -d /tmp/comptk-pg.XXXXXX)"
PGPORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
as_pg() {  # PostgreSQL refuses to run as root
    if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi
}
[ "$(id -u)" -eq 0 ] && chown postgres "$PGROOT"
as_pg "$PGBIN/initdb -D $PGROOT/data -A trust -U postgres --no-sync" >/dev/null
as_pg "$PGBIN/pg_ctl -D $PGROOT/data -l $PGROOT/log -w -o \"-h 127.0.0.1 -p $PGPORT -k $PGROOT\" start" >/dev/null
stop_postgres() {
    as_pg "$PGBIN/pg_ctl -D $PGROOT/data -m fast -w stop" >/dev/null 2>&1 || true
    rm -rf "$PGROOT"
}
trap stop_postgres EXIT
export COMPTK_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$PGPORT/postgres"
echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT for the shared-study test"
