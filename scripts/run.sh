#!/usr/bin/env bash
# `make run`: a private PostgreSQL and nats-server under ./var (created on
# first run, reused after), migrations, an admin key on first run, then
# `vigil serve` in the foreground. Ctrl-C / SIGTERM stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VAR=$(realpath -m "${VIGIL_VAR_DIR:-$ROOT/var}")
PG_PORT=${VIGIL_PG_PORT:-5433}
NATS_PORT=${VIGIL_NATS_PORT:-4222}
NATS_MON_PORT=${VIGIL_NATS_MONITOR_PORT:-8222}
export VIGIL_HTTP_ADDR=${VIGIL_HTTP_ADDR:-127.0.0.1:8000}
PGBIN=/usr/lib/postgresql/15/bin
VIGIL=$ROOT/build/vigil

say() { printf 'vigil-run: %s\n' "$*" >&2; }

# PostgreSQL refuses to run as root: run its tools as `postgres` then.
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

mkdir -p "$VAR/nats"
if [ ! -f "$VAR/pg/data/PG_VERSION" ]; then
    say "creating PostgreSQL cluster in $VAR/pg"
    install -d -m 700 "$VAR/pg"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$VAR/pg"
    as_pg "$PGBIN/initdb" -D "$VAR/pg/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
fi
if ! as_pg "$PGBIN/pg_ctl" -D "$VAR/pg/data" status >/dev/null 2>&1; then
    say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_pg "$PGBIN/pg_ctl" -D "$VAR/pg/data" -l "$VAR/pg/postgres.log" -w \
        -o "-p $PG_PORT -k $VAR/pg -c listen_addresses=127.0.0.1" start >/dev/null
fi
PSQL=(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -X -q -t -A)
if [ "$("${PSQL[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'vigil'")" != 1 ]; then
    "${PSQL[@]}" -d postgres -c "CREATE DATABASE vigil"
fi
# Migrations run as the owner (postgres); Vigil serves as vigil_app, a login
# role without DDL that `vigil migrate --service-role` makes a member of
# vigil_service. The private cluster trusts loopback connections, so no
# password is involved here (see README, "Security settings").
export VIGIL_MIGRATE_DATABASE_URL=${VIGIL_MIGRATE_DATABASE_URL:-postgresql://postgres@127.0.0.1:$PG_PORT/vigil}
export VIGIL_DATABASE_URL=${VIGIL_DATABASE_URL:-postgresql://vigil_app@127.0.0.1:$PG_PORT/vigil}
export VIGIL_NATS_URL=${VIGIL_NATS_URL:-nats://127.0.0.1:$NATS_PORT}

NATS_PID=""
if [ -f "$VAR/nats/nats.pid" ] && kill -0 "$(cat "$VAR/nats/nats.pid")" 2>/dev/null; then
    NATS_PID=$(cat "$VAR/nats/nats.pid")
else
    say "starting nats-server (JetStream) on 127.0.0.1:$NATS_PORT"
    # In its own session: Ctrl-C at the terminal signals the whole
    # foreground process group, and nats-server (unlike PostgreSQL, which
    # pg_ctl detaches) would stop at once, while Vigil still drains. It is
    # stopped below, after Vigil.
    setsid nats-server -js -sd "$VAR/nats/js" -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MON_PORT" \
        -P "$VAR/nats/nats.pid" -l "$VAR/nats/nats.log" &
    NATS_PID=$!
fi

STOPPED=""
stop_all() {
    trap - INT TERM EXIT
    [ -n "$STOPPED" ] && return 0
    STOPPED=1
    if [ -n "${VIGIL_PID:-}" ]; then
        kill -TERM "$VIGIL_PID" 2>/dev/null || true
        wait "$VIGIL_PID" 2>/dev/null && VIGIL_RC=0 || VIGIL_RC=$?
    fi
    say "stopping nats-server"
    kill -TERM "$NATS_PID" 2>/dev/null || true
    say "stopping PostgreSQL"
    as_pg "$PGBIN/pg_ctl" -D "$VAR/pg/data" -m fast -w stop >/dev/null 2>&1 || true
}
trap stop_all INT TERM EXIT

"$VIGIL" migrate --service-role vigil_app >/dev/null
if [ ! -s "$VAR/admin.key" ]; then
    (umask 077; "$VIGIL" keys create --role admin --name admin | tail -n 1 > "$VAR/admin.key")
    chmod 600 "$VAR/admin.key"
    say "created an admin API key in $VAR/admin.key"
fi

# First start (no customers yet): offer demo data so the dashboard is not
# empty. VIGIL_DEMO=1 loads it without asking, VIGIL_DEMO=0 never asks.
if [ "${VIGIL_DEMO:-}" != 0 ] &&
   [ "$("${PSQL[@]}" -d vigil -c "SELECT count(*) FROM customers")" = 0 ]; then
    load=${VIGIL_DEMO:-}
    if [ -z "$load" ] && [ -t 0 ]; then
        read -r -p "Load demo data? [y/N] " answer || answer=""
        case "$answer" in [yY]*) load=1 ;; esac
    fi
    if [ "$load" = 1 ]; then
        say "loading demo data (vigil demo seed)"
        "$VIGIL" demo seed --customers 60 --days 30 --seed 1 >&2 || say "demo seed failed (see above)"
    fi
fi

URL="http://$VIGIL_HTTP_ADDR"
cat >&2 <<MSG

  Vigil is starting at $URL   (Ctrl-C stops Vigil, PostgreSQL and nats-server)

  Dashboard: open $URL/ in a browser and paste the key in $VAR/admin.key

  Try it:
    KEY=\$(cat $VAR/admin.key)
    curl -s -X POST $URL/customers -H "Authorization: Bearer \$KEY" \\
         -H 'Content-Type: application/json' \\
         -d '{"full_name": "Test User", "email": "test@example.com"}'

  Operator commands (another terminal):
    export VIGIL_DATABASE_URL=$VIGIL_DATABASE_URL VIGIL_NATS_URL=$VIGIL_NATS_URL
    export VIGIL_MIGRATE_DATABASE_URL=$VIGIL_MIGRATE_DATABASE_URL
    build/vigil status           build/vigil events tail --follow
    build/vigil audit verify     build/vigil reconcile     build/vigil keys list

  Logs: vigil on this terminal, $VAR/pg/postgres.log, $VAR/nats/nats.log

MSG
"$VIGIL" serve &
VIGIL_PID=$!
set +e
wait "$VIGIL_PID"
rc=$?
VIGIL_PID=""
stop_all
# Stopped by Ctrl-C or SIGTERM: the status is Vigil's own (0 for a clean
# stop), not the signal's.
exit "${VIGIL_RC:-$rc}"
