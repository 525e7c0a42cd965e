#!/usr/bin/env bash
# Starts (or finds) reelscore's project-local PostgreSQL 15 cluster and prints its URL.
# The cluster runs as the unprivileged OS user "postgres" (initdb refuses root), keeps its
# data in .pgdata/ of this checkout, and listens on a Unix socket in .pgdata/ and on
# 127.0.0.1 only. Usage: cluster.sh start|stop|status|url
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PGBIN=/usr/lib/postgresql/15/bin
PGPORT="${REELSCORE_PGPORT:-54329}"
# REELSCORE_PGRUN moves the whole cluster (data, socket, log) elsewhere, e.g. for a throwaway
# cluster in the crash tests.
RUNDIR="${REELSCORE_PGRUN:-$ROOT/.pgdata}"
PGDATA="$RUNDIR/data"
OSUSER="${REELSCORE_PGUSER_OS:-postgres}"
DBNAME=reelscore
URL="postgresql://postgres@127.0.0.1:$PGPORT/$DBNAME"

die() { echo "cluster: $*" >&2; exit 1; }
as_pg() { if [ "$(id -un)" = "$OSUSER" ]; then "$@"; else runuser -u "$OSUSER" -- "$@"; fi; }

[ -x "$PGBIN/postgres" ] || die "PostgreSQL 15 server not installed: run 'make setup' (apt-get install postgresql-15)"
id "$OSUSER" >/dev/null 2>&1 || die "OS user '$OSUSER' missing: install postgresql-15 or set REELSCORE_PGUSER_OS"

# A postmaster killed by SIGKILL can linger as a zombie when PID 1 does not reap orphans (as in
# some containers); pg_ctl takes a zombie for a live server, so look at the process state too
# and clear the stale lock file of a dead one.
postmaster_pid() { head -n 1 "$PGDATA/postmaster.pid" 2>/dev/null; }
is_zombie() { [ -r "/proc/$1/status" ] && grep -q '^State:.*Z' "/proc/$1/status"; }
running() {
  local pid; pid="$(postmaster_pid)"
  if [ -n "$pid" ] && is_zombie "$pid"; then
    echo "cluster: postmaster $pid is dead (zombie); removing its stale postmaster.pid" >&2
    rm -f "$PGDATA/postmaster.pid" "$RUNDIR"/.s.PGSQL.*.lock
    return 1
  fi
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
}

init_cluster() {
  mkdir -p "$RUNDIR"
  chown "$OSUSER" "$RUNDIR"
  # The unprivileged server must be able to reach its data directory: give "others" the
  # traverse bit (x, not read) on any ancestor that lacks it, e.g. a 0700 mktemp folder.
  d="$(dirname "$RUNDIR")"
  while [ "$d" != "/" ]; do
    if ! as_pg test -x "$d"; then chmod o+x "$d"; echo "cluster: added o+x on $d so '$OSUSER' can reach .pgdata"; fi
    d="$(dirname "$d")"
  done
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "cluster: initdb $PGDATA (user $OSUSER)"
    as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$PGDATA/postgresql.conf" <<CONF
# --- reelscore local cluster ---
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$RUNDIR'
shared_preload_libraries = 'timescaledb,pg_cron,pg_stat_statements'
cron.database_name = '$DBNAME'
timescaledb.telemetry_level = off
track_functions = 'all'
max_connections = 300
shared_buffers = 1GB
work_mem = 64MB
maintenance_work_mem = 1GB
max_wal_size = 8GB
checkpoint_timeout = 15min
wal_compression = on
max_worker_processes = 24
timescaledb.max_background_workers = 8
logging_collector = off
CONF
    # trust is for this local development cluster only: it is reachable from this machine only.
    cat >"$PGDATA/pg_hba.conf" <<HBA
local all all trust
host  all all 127.0.0.1/32 trust
HBA
  fi
}

start() {
  init_cluster
  if ! running; then
    if (exec 3<>"/dev/tcp/127.0.0.1/$PGPORT") 2>/dev/null; then
      die "port $PGPORT on 127.0.0.1 is in use by another server: stop it or set REELSCORE_PGPORT"
    fi
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$RUNDIR/server.log" -w -t 60 start >/dev/null \
      || die "server failed to start: see $RUNDIR/server.log ($(tail -n 3 "$RUNDIR/server.log" | tr '\n' ' '))"
  fi
  # the database too, also on a running cluster (it may have been dropped)
  if ! as_pg "$PGBIN/psql" -h "$RUNDIR" -p "$PGPORT" -U postgres -d postgres -Atqc \
      "select 1 from pg_database where datname='$DBNAME'" | grep -q 1; then
    as_pg "$PGBIN/createdb" -h "$RUNDIR" -p "$PGPORT" -U postgres "$DBNAME"
  fi
}

case "${1:-start}" in
  start) start; echo "$URL" ;;
  url) echo "$URL" ;;
  stop) if running; then as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null; echo "cluster: stopped"; else echo "cluster: not running"; fi ;;
  status) if running; then echo "running: $URL"; else echo "stopped"; exit 3; fi ;;
  *) die "unknown command '$1' (start|stop|status|url)" ;;
esac
