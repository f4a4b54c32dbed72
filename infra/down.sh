#!/usr/bin/env bash
# Stops exactly what infra/up.sh started, by pid. Idempotent: missing or dead pids are skipped.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=infra/common.sh
source "$HERE/common.sh"

stop_pid() {
  local name="$1" f="$STACK_DIR/run/$1.pid"
  [ -f "$f" ] || return 0
  local pid
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
if [ -f "$STACK_DIR/pg/postmaster.pid" ] && [ -n "$PG_BIN" ]; then
  log "stopping postgresql"
  as_pg "$PG_BIN/pg_ctl" -D "$STACK_DIR/pg" -m fast -w stop >/dev/null 2>&1 || true
fi
stop_pid postgres
stop_pid tansu
stop_pid moto
log "stack is down"
