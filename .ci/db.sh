#!/usr/bin/env bash
# Throwaway PostgreSQL + MariaDB servers for the storage contract tests.
#
#   eval "$(bash .ci/db.sh start)"   # installs if needed, starts both, prints the test env vars
#   bash .ci/db.sh stop              # stops both and deletes their data
#
# Written for root on Debian 12. Both servers listen on 127.0.0.1 only, on unusual ports
# (PostgreSQL 55432, MariaDB 53306), with their data under $SIPSCA_DB_DIR (default
# /tmp/sipsca-db), so they never touch a system cluster. Only the `export` lines go to
# stdout; everything else goes to stderr so that `eval "$(...)"` stays clean.
set -euo pipefail

BASE="${SIPSCA_DB_DIR:-/tmp/sipsca-db}"
PG_PORT=55432
MY_PORT=53306
PG_DATA="$BASE/pg"
PG_SOCK="$BASE/pgsock"
MY_DATA="$BASE/mysql"
MY_RUN="$BASE/myrun" # socket, pid and log: written by mariadbd after it dropped root
MY_SOCK="$MY_RUN/mysql.sock"
MY_PID="$MY_RUN/mysql.pid"
WAIT_SECONDS=60

exec 3>&1 1>&2 # fd 3 = the caller's stdout (export lines only); daemons get it closed

die() {
    echo "db.sh: $*"
    for log in "$BASE/pg.log" "$MY_RUN/mysql.err"; do
        [[ -f $log ]] && { echo "--- tail $log"; tail -n 30 "$log"; }
    done
    exit 1
}

as_user() { # as_user USER CMD... : run as USER when we are root, else as ourselves
    local user=$1
    shift
    if [[ $(id -u) -eq 0 ]]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n $dir ]] || die "PostgreSQL binaries not found under /usr/lib/postgresql"
    echo "$dir"
}

install_packages() {
    if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v mariadb-install-db >/dev/null; then
        return
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Another apt run may hold the lock (e.g. a provisioning step): wait for it, bounded.
    apt-get -o DPkg::Lock::Timeout=600 update
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends postgresql mariadb-server
}

wait_for() { # wait_for WHAT CMD... : poll CMD once a second until it succeeds
    local what=$1 i
    shift
    for ((i = 0; i < WAIT_SECONDS; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    die "$what did not accept connections within ${WAIT_SECONDS}s"
}

start_pg() {
    local bin owner=postgres
    bin=$(pg_bin)
    [[ $(id -u) -eq 0 ]] || owner=$(id -un)
    if [[ -f $PG_DATA/postmaster.pid ]] && as_user "$owner" "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        echo "db.sh: PostgreSQL already running"
    else
        if [[ ! -f $PG_DATA/PG_VERSION ]]; then
            rm -rf "$PG_DATA" "$PG_SOCK"
            mkdir -p "$PG_DATA" "$PG_SOCK"
            chown "$owner" "$PG_DATA" "$PG_SOCK"
            as_user "$owner" "$bin/initdb" -D "$PG_DATA" -U postgres --auth=trust \
                -E UTF8 --no-locale >"$BASE/initdb.log" 2>&1 || die "initdb failed (see $BASE/initdb.log)"
        fi
        touch "$BASE/pg.log" && chown "$owner" "$BASE/pg.log"
        as_user "$owner" "$bin/pg_ctl" -D "$PG_DATA" -l "$BASE/pg.log" -w -t "$WAIT_SECONDS" \
            -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_SOCK -c fsync=off" \
            start </dev/null >>"$BASE/pg_ctl.out" 2>&1 3>&- || die "PostgreSQL did not start"
    fi
    wait_for PostgreSQL "$bin/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -U postgres
}

my_sql() { mariadb --no-defaults --protocol=socket --socket="$MY_SOCK" -uroot "$@"; }

start_mysql() {
    local owner=mysql
    [[ $(id -u) -eq 0 ]] || owner=$(id -un)
    if [[ -f $MY_PID ]] && kill -0 "$(cat "$MY_PID")" 2>/dev/null; then
        echo "db.sh: MariaDB already running"
    else
        if [[ ! -d $MY_DATA/mysql ]]; then
            rm -rf "$MY_DATA"
            mkdir -p "$MY_DATA"
            chown "$owner" "$MY_DATA"
            mariadb-install-db --no-defaults --datadir="$MY_DATA" --user="$owner" \
                --auth-root-authentication-method=normal --skip-test-db \
                >"$BASE/mysql-install.log" 2>&1 || die "mariadb-install-db failed (see $BASE/mysql-install.log)"
        fi
        rm -rf "$MY_RUN"
        mkdir -p "$MY_RUN"
        chown "$owner" "$MY_RUN"
        # setsid + closed stdio: the daemon must not hold the caller's $(...) pipe open.
        setsid mariadbd --no-defaults --datadir="$MY_DATA" --user="$owner" \
            --bind-address=127.0.0.1 --port="$MY_PORT" --socket="$MY_SOCK" --pid-file="$MY_PID" \
            --log-error="$MY_RUN/mysql.err" --skip-name-resolve \
            --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
            --innodb-flush-log-at-trx-commit=2 </dev/null >>"$BASE/mysql.out" 2>&1 3>&- &
    fi
    wait_for MariaDB my_sql -e "SELECT 1"
    my_sql <<'SQL' || die "could not create the sipsca database/user"
CREATE DATABASE IF NOT EXISTS sipsca CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'sipsca'@'%' IDENTIFIED BY 'sipsca';
GRANT ALL PRIVILEGES ON sipsca.* TO 'sipsca'@'%';
FLUSH PRIVILEGES;
SQL
    wait_for "MariaDB (TCP)" mariadb --no-defaults -h127.0.0.1 -P"$MY_PORT" -usipsca -psipsca sipsca -e "SELECT 1"
}

stop_pg() {
    local bin owner=postgres
    [[ -d $PG_DATA ]] || return 0
    bin=$(pg_bin)
    [[ $(id -u) -eq 0 ]] || owner=$(id -un)
    if as_user "$owner" "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        as_user "$owner" "$bin/pg_ctl" -D "$PG_DATA" -m fast -w -t "$WAIT_SECONDS" stop \
            </dev/null >>"$BASE/pg_ctl.out" 2>&1 || die "PostgreSQL did not stop"
    fi
}

stop_mysql() {
    local pid i
    [[ -f $MY_PID ]] || return 0
    pid=$(cat "$MY_PID")
    kill "$pid" 2>/dev/null || return 0
    for ((i = 0; i < WAIT_SECONDS; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 1
    done
    die "MariaDB (pid $pid) did not stop"
}

case "${1:-}" in
start)
    install_packages
    mkdir -p "$BASE"
    chmod 755 "$BASE"
    start_pg
    start_mysql
    echo "export SIPSCA_TEST_PG_URL=postgresql://postgres@127.0.0.1:$PG_PORT/postgres" >&3
    echo "export SIPSCA_TEST_MYSQL_URL=mysql://sipsca:sipsca@127.0.0.1:$MY_PORT/sipsca" >&3
    ;;
stop)
    stop_pg
    stop_mysql
    rm -rf "$BASE"
    echo "db.sh: stopped"
    ;;
*)
    echo "usage: bash .ci/db.sh start|stop"
    exit 2
    ;;
esac
