#!/usr/bin/env bash
# Start a throwaway PostgreSQL on 127.0.0.1 for the decision-log tests.
#
#   eval "$(bash scripts/ci_postgres.sh)"    # start (or reuse) it; sets MODELTRIAGE_TEST_POSTGRES_URL
#   bash scripts/ci_postgres.sh stop         # stop it and delete its data
#
# Only the export line goes to stdout, so the eval above sees nothing else. The cluster
# trades durability for speed (fsync off): it holds test data only.
# Settings: MODELTRIAGE_PG_PORT (default 54329), MODELTRIAGE_PG_DIR (default under $TMPDIR).
set -euo pipefail

PORT="${MODELTRIAGE_PG_PORT:-54329}"
BASE="${MODELTRIAGE_PG_DIR:-${TMPDIR:-/tmp}/modeltriage-pg-$PORT}"
DATA="$BASE/data"
DB=modeltriage_test
DB_USER=postgres
HOST=127.0.0.1

# Keep stdout for the export line alone; every tool below talks on stderr.
exec 3>&1 1>&2

log() { echo "ci_postgres: $*"; }
die() { log "error: $*"; exit 1; }

find_bindir() {
    local dir
    # Debian keeps the server binaries out of PATH, one directory per major version.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

install_server() {
    [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed and installing it needs root"
    log "installing PostgreSQL with apt-get"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
}

# initdb refuses to run as root, so as root the cluster belongs to the postgres user.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

print_url() {
    local password
    password="$(cat "$BASE/password")"
    echo "export MODELTRIAGE_TEST_POSTGRES_URL=postgresql://$DB_USER:$password@$HOST:$PORT/$DB" >&3
}

is_ours_running() {
    [[ -f "$DATA/PG_VERSION" ]] && as_owner "$BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

init_cluster() {
    log "creating a cluster in $DATA"
    mkdir -p "$BASE"
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "no postgres user to own the cluster"
        chown postgres: "$BASE"
    fi
    chmod 700 "$BASE"
    # A random password, so the URL exercises authentication like a real deployment.
    as_owner sh -c "umask 077; head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' > '$BASE/password'"
    # --no-locale: the C locale exists everywhere and the tests need no collation.
    as_owner "$BIN/initdb" -D "$DATA" -U "$DB_USER" --pwfile="$BASE/password" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale >/dev/null
}

start_cluster() {
    if "$BIN/pg_isready" -q -h "$HOST" -p "$PORT"; then
        die "port $PORT on $HOST is taken by another server; set MODELTRIAGE_PG_PORT"
    fi
    log "starting PostgreSQL on $HOST:$PORT"
    # 3>&-: the server must not inherit the export pipe, or "$(...)" would wait for it.
    as_owner "$BIN/pg_ctl" start -D "$DATA" -l "$BASE/server.log" -w -t 60 \
        -o "-c listen_addresses=$HOST -p $PORT -k $BASE -c fsync=off \
            -c synchronous_commit=off -c full_page_writes=off -c max_connections=50" \
        >/dev/null 3>&- || { tail -n 20 "$BASE/server.log" || true; die "the server did not start"; }
}

wait_ready() {
    local _
    for _ in $(seq 1 60); do
        if "$BIN/pg_isready" -q -h "$HOST" -p "$PORT"; then
            return 0
        fi
        sleep 0.5
    done
    die "the server on $HOST:$PORT is not accepting connections"
}

ensure_database() {
    local psql=("$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$BASE" -p "$PORT" -U "$DB_USER" -d postgres)
    if [[ -z "$(as_owner "${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]]; then
        log "creating database $DB"
        as_owner "${psql[@]}" -c "CREATE DATABASE $DB"
    fi
}

stop_cluster() {
    if is_ours_running; then
        as_owner "$BIN/pg_ctl" stop -D "$DATA" -m fast -w >/dev/null
        log "stopped the server on $HOST:$PORT"
    fi
    rm -rf "$BASE"
}

BIN="$(find_bindir)" || { install_server; BIN="$(find_bindir)" || die "initdb not found after install"; }

case "${1:-start}" in
    stop)
        stop_cluster
        ;;
    start)
        [[ -f "$DATA/PG_VERSION" ]] || init_cluster
        is_ours_running || start_cluster
        wait_ready
        ensure_database
        print_url
        ;;
    *)
        die "usage: $0 [start|stop]"
        ;;
esac
