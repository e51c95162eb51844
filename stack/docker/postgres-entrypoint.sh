#!/bin/bash
# First start on an empty data volume: make the cluster (scram passwords), the
# application role and its database; every start: exec the server as PID 1's child.
#   POSTGRES_PASSWORD  superuser `postgres` password (needed on the first start only)
#   APP_USER, APP_PASSWORD, APP_DB  role and database for the application (APP_PASSWORD empty: none)
set -euo pipefail

if [[ "${1:-}" == postgres && ! -s "$PGDATA/PG_VERSION" ]]; then
  : "${POSTGRES_PASSWORD:?is needed to initialise an empty data directory}"
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" --auth=scram-sha-256 \
         --encoding=UTF8 --locale=C.UTF-8 --no-instructions --no-sync > /tmp/initdb.log 2>&1 \
    || { cat /tmp/initdb.log >&2; exit 1; }
  rm -f "$pwfile"
  # on a bridge network clients come from other addresses; the server's listen_addresses decides who can reach it
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [[ -n "${APP_PASSWORD:-}" ]]; then
    # a server on a private socket only, so nobody connects before the database exists
    socket=$(mktemp -d)
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=$socket" -w -s start
    PGPASSWORD=$POSTGRES_PASSWORD psql -X -q -v ON_ERROR_STOP=1 -h "$socket" -U postgres -d postgres \
      -v app_user="${APP_USER:-app}" -v app_password="$APP_PASSWORD" -v app_db="${APP_DB:-users}" <<'SQL'
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password';
CREATE DATABASE :"app_db" OWNER :"app_user";
SQL
    pg_ctl -D "$PGDATA" -m fast -w -s stop
    rmdir "$socket"
  fi
  echo "postgres-entrypoint: initialised $PGDATA"
fi
# the passwords are in the cluster now; the server's environment need not carry them
unset POSTGRES_PASSWORD APP_PASSWORD
exec "$@"
