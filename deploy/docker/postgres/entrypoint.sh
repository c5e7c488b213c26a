#!/bin/sh
# First start: initdb with POSTGRES_USER as superuser and POSTGRES_PASSWORD (scram-sha-256 on
# TCP), then one database per name in POSTGRES_DATABASES, owned by POSTGRES_USER. Every start:
# postgres on POSTGRES_LISTEN (default 127.0.0.1) port PGPORT (default 5432). The password
# goes to initdb through a file, never a command line or a log line.
set -eu
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DATABASES:=}" "${POSTGRES_LISTEN:=127.0.0.1}" "${PGPORT:=5432}"
export PGPORT
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres-entrypoint: POSTGRES_PASSWORD is not set" >&2
    exit 1
  fi
  umask 077
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  # initdb's pg_hba.conf allows only loopback TCP: allow any address (listen_addresses limits it).
  printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k /run/postgresql" -w start >/dev/null
  for db in $POSTGRES_DATABASES; do
    createdb -h /run/postgresql -U "$POSTGRES_USER" -O "$POSTGRES_USER" "$db"
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "postgres-entrypoint: initialised $PGDATA (databases: ${POSTGRES_DATABASES:-none})"
fi
exec postgres -D "$PGDATA" -c listen_addresses="$POSTGRES_LISTEN" -p "$PGPORT" -k /run/postgresql
